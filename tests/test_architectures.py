"""The architecture seam: one description per family answers every question the quantities ask."""

import math
import shutil
import tempfile

import pandas as pd
import pytest
import torch

from classsel import checkpoint as ckpt
from classsel import config as C
from classsel import recipe
from classsel.__main__ import main
from classsel.architectures import ARCHS, LAYOUTS, describe, layout
from classsel.architectures.base import spatial_mean, token_mean
from classsel.config import config_hash, resolve
from classsel.layout import RunFiles
from classsel.models import build
from classsel.runs import _model
from classsel.selectivity import measure


def test_existing_run_hashes_are_unchanged():
    # Pinned before the seam existed: a ResNet run keeps its folder in the run store.
    assert config_hash(resolve("smoke")) == "73abde39ea"
    assert config_hash(resolve("mnist")) == "40d4f50638"
    assert config_hash(resolve("smoke", alpha=-20.0, reg_modules=("layer1", "layer4"))) == "524b3a3013"
    with tempfile.TemporaryDirectory() as root:
        assert config_hash(resolve("imagenet", data_root=root)) == "8474323b8d"
        assert config_hash(resolve("cifar10", data_root=root)) == "d8dc8b7b57"


def test_every_builder_belongs_to_its_family_and_its_forward_splits_exactly():
    small = {"resnet": ("resnet50_narrow", 16), "vgg": ("vgg16_narrow", 16), "vit": ("vit_tiny", 14)}
    for family, (name, side) in small.items():
        torch.manual_seed(0)
        model = build(name, 4, width=4, in_channels=2, image_size=side).eval()
        d = describe(model)
        assert d is describe(name) and d.layout is LAYOUTS[family] and ARCHS[name].family == family
        x = torch.randn(3, 2, side, side)
        with torch.no_grad():
            assert torch.equal(d.forward(model, x), model(x))
        assert d.num_classes(model) == 4
        assert list(d.layers(model, d.layout.cka_layers)) == list(d.layout.cka_layers)
    with pytest.raises(ValueError, match="no architecture family describes a Linear"):
        describe(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown arch 'vgg19'; choose one of resnet18, .*vit_tiny"):
        build("vgg19", 10)


def test_a_token_tensor_is_averaged_over_its_tokens_and_refused_where_a_map_was_expected():
    tokens = torch.arange(24.0).view(2, 3, 4)  # [N, tokens, units]
    torch.testing.assert_close(token_mean(tokens), tokens.mean(dim=1))
    with pytest.raises(ValueError, match=r"expected a 4-d \[N, C, H, W\] feature map .* got shape \(2, 3, 4\)"):
        spatial_mean(tokens)  # averaging its last two axes would pass silently and be wrong
    with pytest.raises(ValueError, match=r"expected a 3-d \[N, tokens, D\] token tensor .* got shape \(2, 3, 4, 1\)"):
        token_mean(tokens[..., None])


def test_measure_refuses_a_unit_tensor_that_is_not_its_familys():
    torch.manual_seed(0)
    model = build("resnet50_narrow", 3, width=4, in_channels=1)
    # a block whose output lost its spatial axes: SI would average the wrong axis without the check
    block = model.layer2[1]
    hook = block.register_forward_hook(lambda m, i, o: o.flatten(2))
    x, y = torch.randn(6, 1, 16, 16), torch.arange(6) % 3
    with pytest.raises(ValueError, match=r"4-d \[N, C, H, W\].*got shape \(6, 32, 16\)"):
        measure(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6), 3)
    hook.remove()


def test_the_configuration_asks_the_architecture_for_its_modules_and_defaults():
    vit = C.resolve("mnist", arch="vit_tiny")
    assert (vit.optimizer, vit.lr, vit.weight_decay, vit.warmup_epochs) == ("adamw", 1e-3, 0.05, 0.5)
    assert vit.reg_modules == ("group1", "group2", "group3") == layout("vit_tiny").regularized
    assert C.resolve("mnist", arch="vgg16_narrow").width == 8
    assert C.resolve("mnist", arch="vgg16_narrow", width=16).width == 16  # asked for: kept
    assert C.resolve("mnist", arch="vit_tiny", lr=3e-4).lr == 3e-4
    ident = C.identity(vit)
    assert ident["optimizer"] == "adamw" and ident["warmup_epochs"] == 0.5
    assert "optimizer" not in C.identity(C.resolve("mnist")) and "warmup_epochs" not in C.identity(C.resolve("mnist"))
    assert C.config_hash(C.resolve("mnist", optimizer="adamw")) != C.config_hash(C.resolve("mnist"))
    # AdamW has no momentum field to set; a regulariser that is off has no modules to choose
    assert C.config_hash(C.resolve("mnist", arch="vit_tiny", momentum=0.5)) == C.config_hash(vit)
    assert C.resolve("smoke", arch="vit_tiny", alpha=0.0, reg_modules=["group4"]).reg_modules == vit.reg_modules
    assert C.resolve("smoke", arch="vit_tiny", alpha=-1.0, reg_modules=["group4", "group1"]).reg_modules == (
        "group1", "group4")
    assert C.from_dict(C.identity(vit) | {"preset": "mnist"}) == vit


@pytest.mark.parametrize("overrides,message", [
    (dict(arch="vit_tiny", alpha=-1.0, reg_modules=["layer1"]),
     r"reg_modules=\('layer1',\) is not valid: expected modules of vit_tiny: a list from \['group1'"),
    (dict(arch="vgg16_bn"), "arch='vgg16_bn' is not valid: expected resnet50_narrow for the 1-channel images"),
    (dict(arch="vit_b_16"), r"arch='vit_b_16' is not valid: .*\(or vgg16_narrow, vit_tiny;"),
    (dict(reg_modules=["conv9"], alpha=1.0), r"reg_modules=\['conv9'\] is not valid"),
    (dict(optimizer="adam"), r"optimizer='adam' is not valid: expected one of \['sgd', 'adamw'\]"),
    (dict(warmup_epochs=-1), "warmup_epochs=-1 is not valid: expected a finite number >= 0"),
])
def test_a_configuration_that_does_not_fit_its_architecture_is_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        C.resolve("smoke", **overrides)


def test_a_transformers_patches_must_tile_its_images(tmp_path):
    with pytest.raises(ValueError, match=r"image_size=200 is not valid: .*vit_b_16's 16-pixel patches"):
        C.resolve("imagenet", data_root=str(tmp_path), arch="vit_b_16", image_size=200)
    with pytest.raises(ValueError, match=r"arch='vit_tiny' is not valid: .*7-pixel patches .*32 pixels"):
        C.resolve("cifar10", data_root=str(tmp_path), arch="vit_tiny")
    assert C.input_side(C.resolve("imagenet", data_root=str(tmp_path), arch="vit_b_16", image_size=224)) == 224


@pytest.mark.parametrize("name", ["vgg16_narrow", "vgg16_bn"])
def test_an_image_smaller_than_a_vggs_max_pools_allow_is_refused_by_the_configuration(name, tmp_path):
    """The smallest side the configuration accepts is the smallest the network runs on: one pixel less and
    the last max-pool has nothing to pool (found by running the network, here)."""
    smallest = ARCHS[name].min_side
    for side in (smallest - 1, smallest):
        fits = True
        try:
            build(name, 3, width=4, in_channels=3).eval()(torch.zeros(2, 3, side, side))
        except RuntimeError:
            fits = False
        assert fits == (side == smallest), (name, side)
    with pytest.raises(ValueError, match=rf"image_size={smallest - 1} is not valid: .*at least {smallest} pixels"):
        C.resolve("imagenet", data_root=str(tmp_path), arch=name, image_size=smallest - 1)
    assert C.input_side(C.resolve("imagenet", data_root=str(tmp_path), arch=name, image_size=smallest)) == smallest


def test_warmup_rises_linearly_then_steps_down_as_a_loop_computes_it():
    factor = recipe.warmup_factor(0.5, lr_step=2, steps_per_epoch=10)  # 5 warm-up steps, /10 every 20
    expected = []
    for step in range(45):
        f = 1.0 if step >= 5 else (step + 1) / 5
        for _ in range(step // 20):
            f /= 10
        expected.append(f)
    assert [factor(s) for s in range(45)] == pytest.approx(expected, rel=1e-12)
    cfg = C.resolve("smoke", arch="vit_tiny", warmup_epochs=0.5, lr_step=2)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = recipe.optimizer(cfg, [param])
    assert isinstance(opt, torch.optim.AdamW) and recipe.per_step(cfg)
    sched = recipe.schedule(cfg, opt, 10)
    seen = []
    for _ in range(25):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([cfg.lr * e for e in expected[:25]], rel=1e-12)
    sgd = C.resolve("smoke")
    assert isinstance(recipe.optimizer(sgd, [param]), torch.optim.SGD) and not recipe.per_step(sgd)
    assert math.isclose(recipe.optimizer(sgd, [param]).param_groups[0]["momentum"], 0.9)


@pytest.mark.parametrize("arch", ["vgg16_narrow", "vit_tiny"])
def test_a_run_of_each_new_architecture_trains_and_resumes_to_the_bit(arch, tmp_path, monkeypatch):
    """The command line trains the run; a copy cut back to its checkpoint after epoch 1, as a
    killed run leaves it, resumes to the same metrics and per-unit SI (same process, same threads)."""
    monkeypatch.setenv("CLASSSEL_RUNS", str(tmp_path / "store"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole, cut = tmp_path / "whole", tmp_path / "cut"
        args = ["train", "--preset", "smoke", "--arch", arch, "--no-progress"]
        assert main([*args, "--out", str(whole)]) == 0
        files = RunFiles(whole)
        steps = [s for s, _ in files.checkpoints()]
        metrics = pd.read_csv(files.metrics, float_precision="round_trip")
        assert list(metrics.columns[metrics.columns.str.startswith("si_")]) == [
            f"si_{m}" for m in layout(arch).modules]
        shutil.copytree(whole, cut)
        per_epoch = steps[-1] // 3
        for step, path in RunFiles(cut).checkpoints():
            if step > per_epoch:  # and the tables measured there: the resumed run must write them again
                for written in (path, RunFiles(cut).si(step), RunFiles(cut).predictions(step)):
                    written.unlink()
        (cut / "DONE").unlink()
        assert main([*args, "--out", str(cut), "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    timing = ["train_seconds", "eval_seconds"]
    read = lambda folder: pd.read_csv(folder / "metrics.csv", float_precision="round_trip").drop(columns=timing)  # noqa: E731
    pd.testing.assert_frame_equal(read(cut), read(whole), check_exact=True)
    for step in steps:
        name = f"si/step{step:08d}.csv.gz"
        pd.testing.assert_frame_equal(pd.read_csv(cut / name), pd.read_csv(whole / name), check_exact=True)
    lrs = read(whole).lr.tolist()
    if arch == "vit_tiny":  # AdamW's warm-up over half an epoch of the smoke preset's 10 steps
        assert lrs[0] == pytest.approx(1e-3 / 5) and lrs[-1] == pytest.approx(1e-3)
    cfg = resolve("smoke", arch=arch)
    model = _model(cfg, ckpt.load(files.checkpoint(steps[-1]))["model"])
    assert describe(model).layout.family == ARCHS[arch].family
