"""A notebook's parameters: parsing papermill's text, one check per notebook, settings,
defaults per preset, and errors that name the parameter."""

import pytest

from classsel import params as P
from classsel import sections
from classsel.config import config_hash, resolve


@pytest.mark.parametrize("text,value", [
    ("[0.65, 1, 2]", [0.65, 1, 2]),
    ("[[0, 2], [0, 1]]", [[0, 2], [0, 1]]),
    ('{"image_size": 64, "lr": 0.05}', {"image_size": 64, "lr": 0.05}),
    ('{"amp": "off", "progress": false}', {"amp": "off", "progress": False}),  # JSON, not Python
    ("twenty", "twenty"),
    ("[not a literal", "[not a literal"),
    (5, 5),
])
def test_parse_text(text, value):
    assert P.parse_text(text) == value


def test_setting_applies_overrides_and_keeps_identity():
    s = P.setting("mnist", 3, None, '{"width": 8}')
    cfg = s.config(alpha=-20.0, reg_start=1)
    assert (cfg.epochs, cfg.width, cfg.image_size, cfg.alpha, cfg.reg_start) == (3, 8, 224, -20.0, 1)
    assert config_hash(cfg) == config_hash(resolve("mnist", epochs=3, width=8, alpha=-20.0, reg_start=1))
    # image_size does nothing on MNIST: refused, naming it, rather than dropped without a word
    with pytest.raises(ValueError, match="image_size=64 does not apply to preset 'mnist'"):
        P.setting("mnist", 3, None, '{"image_size": 64, "width": 8}')
    plain = P.setting("mnist", 3, None, None).config()
    assert config_hash(plain) == config_hash(resolve("mnist", epochs=3))
    assert config_hash(plain) != config_hash(P.setting("mnist", 3, None, {"width": 8}).config())
    # execution fields change nothing that identifies a run
    assert config_hash(plain) == config_hash(P.setting("mnist", 3, None, {"workers": 2}).config())


@pytest.mark.parametrize("overrides,message", [
    ({"alpha": 1}, "'alpha' is set by the notebook's own parameters"),
    ({"epochs": 3}, "'epochs' is set by the notebook's own parameters"),
    ({"colour": 1}, "'colour' is not a field"),
    ({"lr": "fast"}, "overrides['lr']='fast' is not valid: expected a finite number"),
    ("fast", "expected None or a dict of configuration fields"),
])
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match="parameter overrides") as err:
        P.setting("mnist", 3, None, overrides)
    assert message in str(err.value)


def test_a_dataset_override_needs_a_data_root(tmp_path):
    with pytest.raises(ValueError, match="parameter data_root=None .* imagefolder data"):
        P.setting("mnist", 3, None, {"dataset": "imagefolder"})
    with pytest.raises(ValueError, match="parameter data_root=.*cifar10"):
        P.setting("cifar10", 3, str(tmp_path / "missing"), None)


def test_defaults_per_preset_follow_the_paper_and_fit_the_epochs(tmp_path):
    def d(section, preset, epochs=None, **values):
        root = {"data_root": str(tmp_path)} if preset == "imagenet" else {}
        return sections.defaults(section, preset, epochs=epochs, out_dir=str(tmp_path / "out"), **root, **values)

    assert d("ablation", "imagenet").seeds == list(range(10))
    assert d("cka", "imagenet").seeds == list(range(6))
    assert d("class_representation", "imagenet").seeds == list(range(5))
    assert d("regularize", "imagenet").epochs == 20 and d("emergence", "imagenet").epochs == 90
    assert d("regularize", "imagenet").reg_starts == [0, 1, 2, 3, 4, 5]
    assert d("regularize", "imagenet", 3).reg_starts == [0, 1, 2]
    assert d("regularize", "mnist").reg_starts == [0, 2]
    assert d("regularize", "smoke", 1).reg_starts == [0]
    promote = d("promote", "imagenet")
    assert (promote.alphas, promote.schedules) == ([1.0, 5.0], [(0, 4), (0, 1)])
    assert d("promote", "imagenet", 2).schedules == [(0, 2), (0, 1)]
    assert d("promote", "imagenet", 1).schedules == [(0, 1)]
    for preset in ("smoke", "mnist", "imagenet"):
        for epochs in (1, 2, 5, 20):
            assert d("promote", preset, epochs).schedules  # always valid pairs
            p = d("class_representation", preset, epochs, early_until=epochs / 2)
            assert 0 <= p.promote_start < (p.promote_stop or epochs) <= epochs


@pytest.mark.parametrize("call,message", [
    (lambda: P.pair("promote_schedule", [2, 1], 5), "parameter promote_schedule[1]=1"),
    (lambda: P.pair("promote_schedule", [0, 9], 5), "parameter promote_schedule[1]=9"),
    (lambda: P.pair("promote_schedule", "0-2", 5), "expected a pair [start, stop]"),
    (lambda: P.pairs("schedules", "[[0, 2], [3]]", 5), "parameter schedules[1]=[3]"),
    (lambda: P.pairs("schedules", [], 5), "expected a non-empty list"),
    (lambda: P.integers("reg_starts", "[0, 7]", 0, 4), "parameter reg_starts[1]=7"),
    (lambda: P.numbers_("alphas", "[1, 'five']"), "parameter alphas[1]='five'"),
    (lambda: P.modules("modules", "[layer1, layer9]"), "parameter modules="),
    (lambda: P.seeds("[0, -1]", 3), "parameter seeds[1]=-1"),
])
def test_bad_lists_are_named(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_lists_as_papermill_text():
    assert P.pairs("schedules", "[[0, 2], [0, null]]", 5) == [(0, 2), (0, None)]
    assert P.integers("reg_starts", "[0, 2]", 0, 4) == [0, 2]
    assert P.modules("modules", '["layer3", "layer1"]') == ("layer1", "layer3")
    assert P.seeds("[3, 4]", 3) == [3, 4]
    assert P.seeds(2, 3) == [0, 1] and P.seeds(None, 3) == [0, 1, 2]




def namespace(section, **values):
    """A notebook's namespace with its parameters cell's defaults, changed by ``values``."""
    return {**sections.parameters(section), **values}


@pytest.mark.parametrize("section", list(sections.SECTIONS))
def test_every_notebook_checks_its_defaults_in_one_call(section, tmp_path):
    p = sections.check(section, namespace(section, preset="smoke", out_dir=str(tmp_path)))
    assert p.seeds == [0, 1] and p.epochs == 3 and p.out == tmp_path and p.setting.preset == "smoke"


@pytest.mark.parametrize("section,values,message", [
    ("regularize", {"alpha": 20}, "parameter alpha=20.0 is not valid: expected a negative number"),
    ("promote", {"alphas": [-5]}, "parameter alphas[0]=-5.0 is not valid: expected a positive number"),
    ("regularize", {"reg_starts": [0, 9]}, "parameter reg_starts[1]=9"),
    ("cka", {"layers": ["layer1"]}, "parameter layers=['layer1'] is not valid"),
    ("ablation", {"ablation_epochs": [0, 99]}, "parameter ablation_epochs=[0.0, 99.0] is not valid"),
    ("class_representation", {"early_until": 3}, "parameter early_until=3.0 is not valid"),
    ("emergence", {"preset": "tiny"}, "parameter preset='tiny' is not valid"),
    ("emergence", {"seeds": [0, 2**63]}, "parameter seeds[1]="),
    ("emergence", {"epochs": 10**9}, "parameter epochs=1000000000 is not valid"),
    ("emergence", {"overrides": {"eval_steps": 5}}, "parameter overrides['eval_steps']=5 is not valid"),
    ("emergence", {"overrides": {"device": 0}}, "parameter overrides['device']=0 is not valid"),
])
def test_bad_parameters_are_named(section, values, message, tmp_path):
    with pytest.raises(ValueError) as err:
        sections.check(section, namespace(section, **{"preset": "smoke", "out_dir": str(tmp_path), **values}))
    assert message in str(err.value)


def test_the_configuration_layer_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, classsel.config, classsel.params; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
