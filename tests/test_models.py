import os

import pytest
import torch
from torch import nn
from torchvision.models import resnet as torchvision_resnet
from torchvision.models import vgg as torchvision_vgg
from torchvision.models import vision_transformer as torchvision_vit
from torchvision.models.resnet import Bottleneck

from classsel.models import ARCHS, CPU_CHUNK, bottlenecks, build, check_chunk, describe, evaluating, pieces


@pytest.mark.parametrize(
    "arch,counts,channels",
    [
        ("resnet18", [2, 2, 2, 2], [64, 128, 256, 512]),
        ("resnet34", [3, 4, 6, 3], [64, 128, 256, 512]),
        ("resnet50", [3, 4, 6, 3], [256, 512, 1024, 2048]),
        ("resnet101", [3, 4, 23, 3], [256, 512, 1024, 2048]),
        ("resnet50_narrow", [3, 4, 6, 3], [64, 128, 256, 512]),
    ],
)
def test_bottlenecks_layout(arch, counts, channels):
    model = build(arch, 10)
    blocks = bottlenecks(model)
    for module, n, c, number in zip(["layer1", "layer2", "layer3", "layer4"], counts, channels, [4, 5, 6, 7]):
        mine = [b for b in blocks if b.module == module]
        assert [b.index for b in mine] == list(range(n))
        assert {b.channels for b in mine} == {c}
        assert {b.number for b in mine} == {number}
        assert [b.name for b in mine] == [f"{module}.{i}" for i in range(n)]


def assert_same_state(ours: nn.Module, theirs: nn.Module) -> None:
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].shape == b[key].shape and torch.equal(a[key], b[key]), key


def assert_same_network(ours: nn.Module, theirs: nn.Module, shape) -> None:
    """The same weights, and the same outputs and gradients to the bit, in both modes."""
    assert_same_state(ours, theirs)
    x = torch.randn(*shape)
    for training in (False, True):
        outputs = []
        for model in (ours, theirs):
            torch.manual_seed(2)  # the same dropout masks
            outputs.append(model.train(training)(x))
        assert torch.equal(*outputs), training
        for model, out in zip((ours, theirs), outputs):
            model.zero_grad()
            out.square().sum().backward()
        for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
            assert torch.equal(a.grad, b.grad), (training, name)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "vgg16_bn", "vit_b_16"])
def test_each_full_size_builder_is_torchvisions_network(arch):
    # This project's classes, not torchvision's (importing torchvision costs every process seconds),
    # build torchvision's networks: for a seed, the same weights, outputs and gradients bit for bit.
    size = 32 if arch == "vit_b_16" else 64
    theirs = {"vgg16_bn": torchvision_vgg.vgg16_bn, "vit_b_16": torchvision_vit.vit_b_16}.get(
        arch, getattr(torchvision_resnet, arch, None))
    extra = {"image_size": size} if arch == "vit_b_16" else {}
    torch.manual_seed(0)
    ours = build(arch, 7, **extra)
    torch.manual_seed(0)
    reference = theirs(weights=None, num_classes=7, **extra)
    torch.manual_seed(1)
    assert_same_network(ours, reference, (2, 3, size, size))
    assert describe(reference).layout == describe(ours).layout  # a torchvision network is described too
    assert [b.name for b in bottlenecks(reference)] == [b.name for b in bottlenecks(ours)]


def test_narrow_full_width_is_torchvision_resnet50():
    # Same layout and, for the same seed, the same weights bit for bit.
    torch.manual_seed(0)
    ours = build("resnet50_narrow", 1000, width=64, small_input=False)
    torch.manual_seed(0)
    assert_same_state(ours, torchvision_resnet.resnet50(weights=None))


def test_vit_tiny_is_torchvisions_transformer_with_its_patch_embedding_for_the_channels():
    # With 3 channels torchvision's network; with 1, that network whose patch embedding is then
    # made again for one channel and initialised as torchvision does (the draws of earlier runs).
    import math

    for channels in (3, 1):
        torch.manual_seed(0)
        ours = build("vit_tiny", 10, in_channels=channels, image_size=28)
        torch.manual_seed(0)
        theirs = torchvision_vit.VisionTransformer(image_size=28, patch_size=7, num_layers=9, num_heads=4,
                                                   hidden_dim=64, mlp_dim=256, num_classes=10)
        if channels != 3:
            theirs.conv_proj = nn.Conv2d(channels, 64, kernel_size=7, stride=7)
            nn.init.trunc_normal_(theirs.conv_proj.weight, std=math.sqrt(1 / (channels * 49)))
            nn.init.zeros_(theirs.conv_proj.bias)
        torch.manual_seed(1)
        assert_same_network(ours, theirs, (3, channels, 28, 28))


def test_a_training_run_on_mnist_never_imports_torchvision(tmp_path):
    """Importing torchvision costs a process seconds (torch._dynamo, through torchvision.ops): a run on
    embedded MNIST needs none of it, nor a network of the other families, nor the server of the worker
    pools."""
    import subprocess
    import sys

    script = (
        "import importlib, sys\n"
        "from classsel.__main__ import main\n"
        "from classsel.models import build\n"
        "from classsel.parallel import PRELOAD\n"
        "args = ['train', '--preset', 'smoke', '--epochs', '1', '--no-progress']\n"
        f"assert main([*args, '--out', r'{tmp_path}/run']) == 0\n"
        "build('vgg16_narrow', 10, width=2, in_channels=1), build('vit_tiny', 10, in_channels=1, image_size=28)\n"
        "for module in PRELOAD:\n"
        "    importlib.import_module(module)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torchvision'))\n")
    env = {**os.environ, "CLASSSEL_RUNS": str(tmp_path / "store")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.splitlines()[-1:] == ["[]"], r.stdout + r.stderr



class NarrowReference(nn.Module):
    """The narrow layout written out with torchvision's ``Bottleneck``: widths w, 2w, 4w, 8w,
    a 3x3/2 stem without max-pool. Modules are made in the order torchvision's ``ResNet``
    makes them and initialised as it does, which fixes the random draws of each."""

    def __init__(self, num_classes: int, width: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inplanes = width
        for i, blocks in enumerate([3, 4, 6, 3]):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            out = planes * Bottleneck.expansion
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            layer = [Bottleneck(inplanes, planes, stride, downsample)]
            layer += [Bottleneck(out, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            inplanes = out
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


@pytest.mark.parametrize("classes,width,in_channels", [(10, 16, 3), (10, 8, 1), (5, 4, 1)])
def test_narrow_weights_for_a_seed_are_pinned(classes, width, in_channels):
    # Runs of a configuration are identified by their seed: the narrow net must draw the
    # same weights for the same seed, whatever way it is built.
    torch.manual_seed(0)
    ours = build("resnet50_narrow", classes, width=width, in_channels=in_channels)
    torch.manual_seed(0)
    assert_same_state(ours, NarrowReference(classes, width, in_channels))


def test_narrow_small_input_runs_on_mnist_shape():
    model = build("resnet50_narrow", 10, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match="'resnet51'.*resnet50"):
        build("resnet51", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build("resnet18", 1)
    with pytest.raises(ValueError, match="'layer5'"):
        bottlenecks(build("resnet18", 10), ["layer5"])
    assert "resnet50_narrow" in ARCHS


def test_evaluating_restores_each_module_mode():
    model = build("resnet50_narrow", 10, width=4, in_channels=1).train()
    model.layer2.eval()  # a mixed state must come back as it was, also after an error
    before = {name: m.training for name, m in model.named_modules()}
    with pytest.raises(RuntimeError, match="boom"):
        with evaluating(model) as inside:
            assert inside is model
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert {name: m.training for name, m in model.named_modules()} == before
    assert model.training and not model.layer2[0].bn1.training and model.layer3.training


@pytest.mark.parametrize("n,chunk,sizes", [(20, 7, [7, 7, 6]), (20, 19, [20]), (21, 10, [10, 11]),
                                           (1, 2, [1]), (5, None, [5]), (4, 2, [2, 2]), (3, 2, [3])])
def test_a_batch_is_cut_into_pieces_of_two_or_more(n, chunk, sizes):
    y = torch.arange(n)
    cut = [y[p] for p in pieces(n, chunk)]
    assert [len(b) for b in cut] == sizes
    assert torch.equal(torch.cat(cut), y)


@pytest.mark.parametrize("chunk", [1, 0, True, 2.0, "200"])
def test_a_piece_size_is_an_integer_of_two_or_more(chunk):
    with pytest.raises(ValueError, match=f"chunk must be an integer >= 2 or None, got {chunk!r}"):
        check_chunk(chunk, torch.device("cpu"))
    assert check_chunk(None, torch.device("cpu")) == CPU_CHUNK and check_chunk(None, torch.device("meta")) is None
