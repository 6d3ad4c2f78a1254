import pytest
import torch

from classsel.representation import prediction_counts, top_k_mean


def test_counts_and_top5_against_python():
    preds = torch.tensor([3, 3, 3, 1, 1, 0, 7, 7, 7, 7, 2, 9])
    counts = prediction_counts(preds, 10)
    assert counts.tolist() == [preds.tolist().count(c) for c in range(10)]
    expected = sorted(counts.tolist(), reverse=True)[:5]
    assert top_k_mean(counts) == pytest.approx(sum(expected) / 5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="0..9"):
        prediction_counts(torch.tensor([10]), 10)
    with pytest.raises(ValueError, match="k must lie in 1..3"):
        top_k_mean(torch.tensor([1, 2, 3]), k=5)
