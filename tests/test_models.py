import pytest
import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck

from classsel.models import ARCHS, bottlenecks, build, evaluating


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


def test_narrow_full_width_is_torchvision_resnet50():
    # Same layout and, for the same seed, the same weights bit for bit.
    torch.manual_seed(0)
    ours = build("resnet50_narrow", 1000, width=64, small_input=False)
    torch.manual_seed(0)
    assert_same_state(ours, resnet50(weights=None))


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
