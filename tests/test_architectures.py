"""The architecture seam: one description per family answers every question the quantities ask."""

import tempfile

from classsel.config import config_hash, resolve


def test_existing_run_hashes_are_unchanged():
    # Pinned before the seam existed: a ResNet run keeps its folder in the run store.
    assert config_hash(resolve("smoke")) == "73abde39ea"
    assert config_hash(resolve("mnist")) == "40d4f50638"
    assert config_hash(resolve("smoke", alpha=-20.0, reg_modules=("layer1", "layer4"))) == "524b3a3013"
    with tempfile.TemporaryDirectory() as root:
        assert config_hash(resolve("imagenet", data_root=root)) == "8474323b8d"
        assert config_hash(resolve("cifar10", data_root=root)) == "d8dc8b7b57"
