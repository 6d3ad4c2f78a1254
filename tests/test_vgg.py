"""The VGG description: VGG16's conv stages 2-5 are modules 4-7, each convolution's ReLU a block."""

import torch
from classsel.architectures.vgg import VGG16
from classsel.models import bottlenecks, build, describe


def test_vgg16_bn_stages_2_to_5_are_the_modules_and_relus_the_units():
    torch.manual_seed(0)
    model = build("vgg16_bn", 10)
    assert type(model) is VGG16  # torchvision's vgg16_bn (tests/test_models.py)
    blocks = bottlenecks(model)
    # torchvision's vgg16_bn: conv, BN, ReLU per convolution, a max-pool after each stage;
    # stage 1 is features[0:7] (two convolutions and the pool), so stage 2's first ReLU is features[9].
    assert [b.name for b in blocks] == ["conv2.0", "conv2.1", "conv3.0", "conv3.1", "conv3.2", "conv4.0", "conv4.1",
                                        "conv4.2", "conv5.0", "conv5.1", "conv5.2"]
    assert [b.block for b in blocks] == [model.features[i] for i in (9, 12, 16, 19, 22, 26, 29, 32, 36, 39, 42)]
    assert all(isinstance(b.block, torch.nn.ReLU) for b in blocks)
    assert [b.channels for b in blocks] == [128] * 2 + [256] * 3 + [512] * 6
    assert [b.number for b in blocks] == [4] * 2 + [5] * 3 + [6] * 3 + [7] * 3
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(describe(model).forward(model.eval(), x), model(x))


def test_narrow_vgg_keeps_vgg16s_layout_and_reads_its_shape_back():
    torch.manual_seed(0)
    model = build("vgg16_narrow", 10, width=8, in_channels=1)
    assert [b.channels for b in bottlenecks(model)] == [16] * 2 + [32] * 3 + [64] * 6
    shape = describe("vgg16_narrow").shape_of(model.state_dict())
    assert shape == {"num_classes": 10, "in_channels": 1}
    again = build("vgg16_narrow", width=8, **shape)
    again.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(describe(model).forward(model.eval(), x), model(x))
