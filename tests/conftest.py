"""Shared test fixtures."""

import numpy as np
import pytest
from PIL import Image


def write_imagefolder(root, splits=("train", "val"), classes=("cat", "dog", "fish"), per_class=4):
    """A small ImageFolder tree of random images with varying sizes, aspect ratios and formats.

    ``per_class`` is a count for every split or a dict of counts per split."""
    rng = np.random.default_rng(0)
    for split in splits:
        count = per_class[split] if isinstance(per_class, dict) else per_class
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = 40 + 7 * (i % 5), 50 - 3 * (i % 5)
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                ext = "JPEG" if i % 2 else "png"
                Image.fromarray(pixels).save(folder / f"{c}_{i}.{ext}")
    return root


@pytest.fixture(scope="session")
def imagefolder_tree():
    """The function that writes an ImageFolder tree (see :func:`write_imagefolder`)."""
    return write_imagefolder


def pytest_configure(config):
    # registered here so the marker lives with the tests that use it (tests/test_cuda.py)
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped where torch.cuda.is_available() is False")
