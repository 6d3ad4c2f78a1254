"""SI (eq. 1) and its streaming measurement against brute-force float64 references."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from classsel.models import build, bottlenecks
from classsel.selectivity import measure, selectivity_index


def si_reference(class_means: np.ndarray, eps=1e-6) -> np.ndarray:
    """Eq. 1 unit by unit, in plain Python float64."""
    out = []
    for u in range(class_means.shape[1]):
        col = [float(v) for v in class_means[:, u]]
        top = max(col)
        rest = col.copy()
        rest.remove(top)
        mu_rest = sum(rest) / len(rest)
        out.append((top - mu_rest) / (top + mu_rest + eps))
    return np.array(out)


def test_si_matches_formula():
    g = torch.Generator().manual_seed(0)
    means = torch.rand(7, 33, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(selectivity_index(means).numpy(), si_reference(means.numpy()), rtol=1e-12)


def test_si_edge_cases():
    # Identical class means: SI 0. One class only active: SI ~1. Dead unit: 0, no NaN.
    means = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 2.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    si = selectivity_index(means)
    assert si[0] == 0
    assert si[1] == 0
    assert si[2] == pytest.approx(1.0, abs=1e-6)


def test_si_present_mask_equals_subset():
    g = torch.Generator().manual_seed(1)
    means = torch.rand(10, 5, generator=g, dtype=torch.float64)
    present = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 0, 1], dtype=torch.bool)
    torch.testing.assert_close(selectivity_index(means, present=present), selectivity_index(means[present]))
    one = torch.zeros(10, dtype=torch.bool)
    one[3] = True
    assert (selectivity_index(means, present=one) == 0).all()


@pytest.mark.parametrize("bad", [torch.rand(5), torch.rand(2, 3, 4), torch.rand(1, 4), np.ones((3, 3))])
def test_si_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="class"):
        selectivity_index(bad)


def per_sample_reference(model, images, labels, num_classes):
    """Class means with one image at a time through the network, float64 sums."""
    blocks = bottlenecks(model)
    sums = {b.name: np.zeros((num_classes, b.channels)) for b in blocks}
    counts = np.zeros(num_classes)
    model.eval()
    with torch.no_grad():
        for x, y in zip(images, labels):
            feats = {}
            hooks = [
                b.block.register_forward_hook(lambda m, i, o, n=b.name: feats.__setitem__(n, o))
                for b in blocks
            ]
            model(x[None])
            for h in hooks:
                h.remove()
            for name, f in feats.items():
                sums[name][int(y)] += f[0].double().mean(dim=(1, 2)).numpy()
            counts[int(y)] += 1
    return {name: s / counts[:, None] for name, s in sums.items()}


@pytest.fixture(scope="module")
def resnet50_setup():
    torch.manual_seed(0)
    # float64 end to end, so batch size cannot change the activations' rounding.
    model = build("resnet50", 5).double()
    images = torch.randn(15, 3, 32, 32, dtype=torch.float64)
    labels = torch.arange(15) % 5
    return model, images, labels


def test_measure_on_real_resnet50(resnet50_setup):
    model, images, labels = resnet50_setup
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    result = measure(model, loader, num_classes=5)
    ref = per_sample_reference(model, images, labels, 5)
    assert len(result.blocks) == 16
    for name, means in ref.items():
        np.testing.assert_allclose(result.class_means[name].numpy(), means, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.si[name].numpy(), si_reference(means), rtol=1e-9, atol=1e-12)
    df = result.to_frame()
    assert {"module", "block", "unit", "si", "number"} <= set(df.columns)
    assert len(df) == sum(b.channels for b in result.blocks)
    assert df.groupby("module")["number"].first().to_dict() == {"layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    assert df.groupby("module")["block"].nunique().to_dict() == {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}
    assert result.samples == 15 and int(result.prediction_counts.sum()) == 15
    with torch.no_grad():
        model.eval()
        logits = model(images)
    assert result.acc1 == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    top5 = logits.topk(5, 1).indices
    assert result.acc5 == pytest.approx((top5 == labels[:, None]).any(1).float().mean().item())


@pytest.mark.parametrize("chunk", [2, 3, 7])
def test_measure_in_pieces_of_a_batch_equals_whole_batches(resnet50_setup, chunk):
    """The CPU's default cuts each batch into pieces of at most ``chunk`` images (none of one): the
    same class means, counts and accuracy as whole batches and as one image at a time."""
    model, images, labels = resnet50_setup
    loader = DataLoader(TensorDataset(images, labels), batch_size=7)  # batches of 7, 7, 1
    whole, cut = measure(model, loader, 5, chunk=7), measure(model, loader, 5, chunk=chunk)
    ref = per_sample_reference(model, images, labels, 5)
    for name, means in ref.items():
        torch.testing.assert_close(cut.class_means[name], whole.class_means[name], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(cut.class_means[name].numpy(), means, rtol=1e-9, atol=1e-12)
    assert torch.equal(cut.prediction_counts, whole.prediction_counts)
    assert (cut.correct1, cut.correct5, cut.samples) == (whole.correct1, whole.correct5, whole.samples) != (0, 0, 0)


def test_measure_rejects_labels_out_of_range():
    model = build("resnet50_narrow", 3, width=4, in_channels=1)
    loader = DataLoader(TensorDataset(torch.randn(8, 1, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1, 2, 0])), batch_size=4)
    with pytest.raises(ValueError, match="label 3 out of range"):
        measure(model, loader, num_classes=3)


def test_measure_names_missing_classes():
    model = build("resnet50_narrow", 4, width=4, in_channels=1)
    loader = DataLoader(TensorDataset(torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])), batch_size=3)
    with pytest.raises(ValueError, match=r"class\(es\) \[3\]"):
        measure(model, loader, num_classes=4)


@pytest.mark.parametrize("num_classes", [3, 6])
def test_measure_names_num_classes_that_differ_from_the_model(num_classes):
    # Fewer classes than the model's outputs once ended in an IndexError on its predictions.
    model = build("resnet50_narrow", 5, width=4, in_channels=1)
    loader = DataLoader(TensorDataset(torch.randn(6, 1, 16, 16), torch.arange(6) % 3), batch_size=3)
    with pytest.raises(ValueError, match=rf"num_classes={num_classes} but the model outputs 5 classes"):
        measure(model, loader, num_classes=num_classes)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_measure_names_images_that_are_not_finite(value):
    model = build("resnet50_narrow", 3, width=4, in_channels=1)
    images = torch.randn(6, 1, 16, 16)
    images[4, 0, 2, 3] = value
    loader = DataLoader(TensorDataset(images, torch.arange(6) % 3), batch_size=3)
    with pytest.raises(FloatingPointError, match="batch 1 of the loader holds 1 values that are NaN or infinite"):
        measure(model, loader, num_classes=3)


def test_measure_names_the_block_whose_activations_are_not_finite():
    model = build("resnet50_narrow", 3, width=4, in_channels=1)
    with torch.no_grad():
        model.layer3[1].conv1.weight[0, 0, 0, 0] = float("inf")  # finite images, diverged weights
    loader = DataLoader(TensorDataset(torch.randn(6, 1, 16, 16), torch.arange(6) % 3), batch_size=3)
    with pytest.raises(FloatingPointError, match=r"block layer3\.1 \(and \d+ more blocks\) gave activations that "
                                                 "are NaN or infinite"):
        measure(model, loader, num_classes=3)
