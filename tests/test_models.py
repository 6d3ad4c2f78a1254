import pytest
import torch
from torchvision.models import resnet50

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


def test_narrow_full_width_is_torchvision_resnet50():
    ours = build("resnet50_narrow", 1000, width=64, small_input=False)
    theirs = resnet50(weights=None)
    shapes = lambda m: [tuple(p.shape) for p in m.state_dict().values()]  # noqa: E731
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert shapes(ours) == shapes(theirs)


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
