"""The vision transformer's description: which blocks form modules 4-7, where its units are,
and how their token tensors become one non-negative value per unit per image."""

import pytest
import torch

from classsel.architectures.base import token_mean
from classsel.architectures.vit import VisionTransformer, groups, nonnegative_token_mean
from classsel.models import bottlenecks, build, describe
from classsel.selectivity import measure, selectivity_index
from torch.utils.data import DataLoader, TensorDataset


def test_blocks_are_grouped_as_the_authors_grouped_vit_b_16():
    assert [list(g) for g in groups(12)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]
    assert [list(g) for g in groups(9)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(ValueError, match=r"at least 5 encoder blocks \(four modules and the last\), got 4"):
        groups(4)


def test_vit_b_16_is_torchvisions_and_its_units_are_the_mlp_gelus():
    torch.manual_seed(0)
    model = build("vit_b_16", 10, image_size=32)  # 2x2 patches: the layout of the 224-pixel network
    assert type(model) is VisionTransformer and describe(model).layout.family == "vit"
    blocks = bottlenecks(model)
    layers = list(model.encoder.layers)
    assert [b.name for b in blocks] == [f"group{m}.{i}" for m, n in zip(range(1, 5), (3, 3, 3, 2)) for i in range(n)]
    assert [b.block for b in blocks] == [layer.mlp[1] for layer in layers[:11]]  # block 11 apart
    assert {b.channels for b in blocks} == {3072} and [b.number for b in blocks[::3]] == [4, 5, 6, 7]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(describe(model).forward(model.eval(), x), model(x))


def test_vit_tiny_takes_one_channel_and_reads_its_shape_back_from_its_weights():
    torch.manual_seed(0)
    model = build("vit_tiny", 10, in_channels=1, image_size=28)
    assert type(model) is VisionTransformer and model.conv_proj.in_channels == 1
    shape = describe("vit_tiny").shape_of(model.state_dict())
    assert shape == {"num_classes": 10, "in_channels": 1, "image_size": 28}
    again = build("vit_tiny", **shape)
    again.load_state_dict(model.state_dict())


def test_a_unit_is_its_token_mean_class_token_included_clamped_at_zero():
    out = torch.tensor([[[1.0, -0.1, -0.1], [3.0, -0.1, 0.3], [2.0, -0.1, -0.15]]])  # [1 image, 3 tokens, 3 units]
    assert torch.equal(token_mean(out), out.mean(dim=1))
    got = nonnegative_token_mean(out)
    assert got[0].tolist() == pytest.approx([2.0, 0.0, 0.05 / 3])
    # The decision, on class means: a unit below its threshold for one class (GELU's negative
    # dip) and on for the other is fully selective; eq. 1 on the raw means leaves [0, 1], and
    # the authors' abs() would read the silent class as active.
    silent, on = torch.full((4, 1, 8), -0.1), torch.full((4, 1, 8), 0.2)
    acts = torch.cat([nonnegative_token_mean(silent), nonnegative_token_mean(on)])
    means = torch.stack([acts[:4].mean(0), acts[4:].mean(0)])
    assert selectivity_index(means)[0].item() == pytest.approx(1.0, abs=1e-5)
    raw = torch.stack([token_mean(silent).mean(0), token_mean(on).mean(0)])
    assert selectivity_index(raw)[0].item() > 1
    absolute = torch.stack([token_mean(silent).abs().mean(0), token_mean(on).mean(0)])
    assert selectivity_index(absolute)[0].item() == pytest.approx(1 / 3, abs=1e-5)


def test_measure_averages_the_tokens_of_the_hooked_gelu():
    torch.manual_seed(0)
    model = build("vit_tiny", 3, in_channels=1, image_size=14).eval()
    x, y = torch.randn(9, 1, 14, 14), torch.arange(9) % 3
    gelu = model.encoder.layers[2].mlp[1]  # group2.0
    seen = []
    hook = gelu.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    result = measure(model, DataLoader(TensorDataset(x, y), batch_size=9), 3)
    hook.remove()
    acts = seen[0].double().mean(dim=1).clamp(min=0)  # [9, 256]
    assert seen[0].dim() == 3 and (seen[0] < 0).any()
    expected = torch.stack([acts[y == c].mean(0) for c in range(3)])
    torch.testing.assert_close(result.class_means["group2.0"], expected, rtol=1e-6, atol=1e-7)
