"""Every configuration field and every notebook parameter against values it must refuse: each
is a clear error (ValueError naming the field or parameter), never a crash and never accepted."""

import math

import pytest

from classsel import config as C
from classsel import sections

ANY_TYPE = [None, True, "x", [], {}, (1, 2), float("nan"), object()]
BAD = {
    "preset": ["tiny", 1, "SMOKE", ["smoke"]],  # None and "" mean the default preset
    "dataset": ["mnist", "", 3, None],
    "data_root": [3, [], ""],
    "per_class": [0, -1, 401, 2.5, "10", True],
    "val_per_class": [0, 101, 1.5, "5", False],
    "image_size": [0, 7, 5000, 32.0, "224"],
    "arch": ["resnet152", "", "ResNet50", 50, None],
    "width": [0, -8, 8.5, "16", None],
    "optimizer": ["adam", "SGD", "", None, 1],
    "warmup_epochs": [-1, -0.5, math.inf, math.nan, "1", None, True],
    "epochs": [0, -1, 10**9, 2.0, "5", None, True],
    "batch_size": [0, -30, 1000, 30.5, "30", None],
    "eval_batch_size": [0, -1, 1.5, "100", None],
    "lr": [-0.1, math.inf, math.nan, "fast", None, True],
    "momentum": [-0.9, math.inf, "0.9", None],
    "weight_decay": [-1e-4, math.nan, "1e-4", None],
    "lr_step": [0, -3, 1.5, "30"],
    "alpha": [math.nan, math.inf, -math.inf, "twenty", None, True],
    "reg_start": [-1, 3, 1.5, "0", None],
    "reg_stop": [0, -1, 1.5, "2"],
    "reg_modules": [["layer9"], [], "layer0", [1], None, ("layer1", 3)],
    "class_stat": ["median", "", None, 1],
    "eval_steps": [5, [0], [-2], [1.5], ["3"], None, "2"],
    "seed": [-1, 2**63, 1e20, 1.5, "0", None],
    "device": [0, "gpu", "cuda:x", "", None],
    "amp": ["fp16", "on", None, True],
    "channels_last": ["yes", True, None],
    "workers": [-1, 1000, 1.5, "4", None],
    "pipeline": ["dali", "", None],
    "keep_checkpoints": ["-5", "", "0,-1", "a,b", 1.5, None, "0,9"],
    "keep_state": ["-5", "", "last", "a,b", 1.5, None, "0,9"],
    "bad_images": ["ignore", "", None, True],
    "progress": ["yes", 1, None],
}


def cases():
    for field, values in BAD.items():
        for value in values:
            yield pytest.param(field, value, id=f"{field}={value!r}")


@pytest.mark.parametrize("field,value", list(cases()))
def test_a_bad_configuration_value_is_a_clear_error(field, value):
    with pytest.raises(ValueError) as err:
        C.resolve(value) if field == "preset" else C.resolve("smoke", **{field: value})
    assert f"{field}=" in str(err.value), str(err.value)


def test_every_field_is_audited():
    assert set(BAD) == set(C.FIELDS)
    assert sum(map(len, BAD.values())) >= 150 - 40  # with the notebook parameters below, over 150 cases


NOTEBOOK = {
    ("emergence", "seeds"): ["three", -1, [0, -2], [0, 2**63], 0, [], 1.5],
    ("emergence", "epochs"): [0, "5", 10**6, 2.5],
    ("emergence", "overrides"): ["fast", [1], {"alpha": 1}, {"colour": 1}, {"eval_steps": 5}, {"device": 0},
                                 {"lr": "fast"}],
    ("emergence", "data_root"): [3],
    ("ablation", "ablation_epochs"): [[0, 99], "[0.5, x]", [], [-1]],
    ("ablation", "levels"): [1, 2.5, "6"],
    ("ablation", "draws"): [0, "2"],
    ("cka", "layers"): [["layer1"], ["layer1", "conv9"], "layer1", []],
    ("cka", "cka_epochs"): [[9], "x"],
    ("regularize", "alpha"): [20, 0, "twenty", math.nan],
    ("regularize", "reg_starts"): [[0, 9], [-1], "x"],
    ("regularize", "reg_stop"): [0, 9],
    ("regularize", "modules"): [["layer9"], []],
    ("regularize", "alphas"): [[5], ["x"]],
    ("regularize", "recover_stop"): [-1, 3],
    ("promote", "alphas"): [[-5], [0]],
    ("promote", "schedules"): [[[2, 1]], [[0, 9]], "0-2", [[0]]],
    ("promote", "strong_alpha"): [-20, "big"],
    ("class_representation", "suppress_alpha"): [5],
    ("class_representation", "promote_alpha"): [-5],
    ("class_representation", "promote_schedule"): [[0, 9], [1, 1]],
    ("class_representation", "early_until"): [0, 3, "1"],
}


def notebook_cases():
    for (section, name), values in NOTEBOOK.items():
        for value in values:
            yield pytest.param(section, name, value, id=f"{section}.{name}={value!r}")


@pytest.mark.parametrize("section,name,value", list(notebook_cases()))
def test_a_bad_notebook_parameter_is_a_clear_error(section, name, value, tmp_path):
    ns = {**sections.parameters(section), "preset": "smoke", "out_dir": str(tmp_path / "out"), name: value}
    with pytest.raises(ValueError) as err:
        sections.check(section, ns)
    assert f"parameter {name}" in str(err.value) or "parameter overrides" in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written before every parameter is good


def test_the_audit_counts():
    config_cases = sum(map(len, BAD.values()))
    notebook = sum(map(len, NOTEBOOK.values()))
    assert config_cases + notebook >= 150, (config_cases, notebook)
