"""What the notebooks share: parameter parsing and checks, settings, defaults per preset,
and the bootstrap confidence intervals."""

import numpy as np
import pytest

from classsel import experiments as ex
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
    assert ex.parse_text(text) == value


def test_setting_applies_overrides_and_keeps_identity():
    s = ex.setting("mnist", 3, None, '{"image_size": 64, "width": 8}')
    cfg = s.config(alpha=-20.0, reg_start=1)
    assert (cfg.epochs, cfg.width, cfg.image_size, cfg.alpha, cfg.reg_start) == (3, 8, 64, -20.0, 1)
    assert config_hash(cfg) == config_hash(resolve("mnist", epochs=3, width=8, image_size=64, alpha=-20.0,
                                                   reg_start=1))
    plain = ex.setting("mnist", 3).config()
    assert config_hash(plain) == config_hash(resolve("mnist", epochs=3))
    assert config_hash(plain) != config_hash(ex.setting("mnist", 3, overrides={"width": 8}).config())
    # execution fields change nothing that identifies a run
    assert config_hash(plain) == config_hash(ex.setting("mnist", 3, overrides={"workers": 2}).config())


@pytest.mark.parametrize("overrides,message", [
    ({"alpha": 1}, "'alpha' is set by the notebook's own parameters"),
    ({"epochs": 3}, "'epochs' is set by the notebook's own parameters"),
    ({"colour": 1}, "'colour' is not a configuration field"),
    ({"lr": "fast"}, "lr='fast' is not valid: expected a finite number"),
    ("fast", "expected None or a dict of configuration fields"),
])
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match="parameter overrides=") as err:
        ex.setting("mnist", 3, None, overrides)
    assert message in str(err.value)


def test_a_dataset_override_needs_a_data_root(tmp_path):
    with pytest.raises(ValueError, match="parameter data_root=None .* imagefolder data"):
        ex.setting("mnist", 3, None, {"dataset": "imagefolder"})
    with pytest.raises(ValueError, match="parameter data_root=.*cifar10"):
        ex.setting("cifar10", 3, str(tmp_path / "missing"))


def test_defaults_per_preset_follow_the_paper_and_fit_the_epochs():
    assert ex.check_seeds(None, "imagenet", "ablation") == list(range(10))
    assert ex.check_seeds(None, "imagenet", "cka") == list(range(6))
    assert ex.check_seeds(None, "imagenet", "class_representation") == [0, 1]
    assert ex.check_epochs(None, "imagenet", "regularize") == 20
    assert ex.check_epochs(None, "imagenet") == 90
    assert ex.regularize_starts("imagenet", 20) == [0, 1, 2, 3, 4, 5]
    assert ex.regularize_starts("imagenet", 3) == [0, 1, 2]
    assert ex.regularize_starts("mnist", 5) == [0, 2]
    assert ex.regularize_starts("smoke", 1) == [0]
    assert ex.promote_defaults("imagenet", 20) == ([1.0, 5.0], [[0, 4], [0, 1]])
    assert ex.promote_defaults("imagenet", 2) == ([1.0, 5.0], [[0, 2], [0, 1]])
    assert ex.promote_defaults("imagenet", 1) == ([1.0, 5.0], [[0, 1]])
    for preset in ex.PRESETS:
        for epochs in (1, 2, 5, 20):
            for start, stop in ex.promote_defaults(preset, epochs)[1]:
                ex.check_pair("schedule", [start, stop], epochs)  # always valid


@pytest.mark.parametrize("call,message", [
    (lambda: ex.check_pair("promote_schedule", [2, 1], 5), "parameter promote_schedule[1]=1"),
    (lambda: ex.check_pair("promote_schedule", [0, 9], 5), "parameter promote_schedule[1]=9"),
    (lambda: ex.check_pair("promote_schedule", "0-2", 5), "expected a pair [start, stop]"),
    (lambda: ex.check_pairs("schedules", "[[0, 2], [3]]", 5), "parameter schedules[1]=[3]"),
    (lambda: ex.check_pairs("schedules", [], 5), "expected a non-empty list"),
    (lambda: ex.check_ints("reg_starts", "[0, 7]", 0, 4), "parameter reg_starts[1]=7"),
    (lambda: ex.check_numbers("alphas", "[1, 'five']"), "parameter alphas[1]='five'"),
    (lambda: ex.check_modules("modules", "[layer1, layer9]"), "parameter modules="),
    (lambda: ex.check_seeds("[0, -1]", "mnist", "default"), "parameter seeds[1]=-1"),
])
def test_bad_lists_are_named(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_lists_as_papermill_text():
    assert ex.check_pairs("schedules", "[[0, 2], [0, null]]", 5) == [(0, 2), (0, None)]
    assert ex.check_ints("reg_starts", "[0, 2]", 0, 4) == [0, 2]
    assert ex.check_modules("modules", '["layer3", "layer1"]') == ("layer1", "layer3")
    assert ex.check_seeds("[3, 4]", "mnist", "default") == [3, 4]
    assert ex.check_seeds(2, "mnist", "default") == [0, 1]


def test_mean_ci_against_the_normal_approximation():
    x = np.random.default_rng(1).normal(2.0, 1.0, 400)
    mean, lo, hi = ex.mean_ci(x, n_boot=4000)
    assert mean == pytest.approx(float(np.mean(x)), abs=1e-12)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(mean - half, abs=0.2 * half) and hi == pytest.approx(mean + half, abs=0.2 * half)
    assert ex.mean_ci([0.5, 0.5, float("nan")]) == (0.5, 0.5, 0.5)


def test_difference_ci_against_the_normal_approximation():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 2.0, 200)
    diff, lo, hi = ex.difference_ci(a, b, n_boot=4000)
    assert diff == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    half = 1.96 * np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert lo == pytest.approx(diff - half, abs=0.2 * half) and hi == pytest.approx(diff + half, abs=0.2 * half)
