"""The training input pipeline of an ImageFolder tree: PIL in loader workers, or decoding on the device.

``"pil"`` is :func:`classsel.data.loader` as it is: workers decode each JPEG with PIL and
apply torchvision's RandomResizedCrop, flip and normalisation image by image.
``"tensor"``: workers only read the files' bytes; the batch is decoded by
``torchvision.io.decode_jpeg`` on the device (nvJPEG on CUDA, libjpeg-turbo on the CPU),
then cropped, resized, flipped and normalised there. Both take their order from the same
sampler, so for one seed and epoch they give the same label stream, and
:func:`classsel.data.set_epoch` drives both. The tensor path draws each batch's crops from
``(seed, epoch, batch, rank)``, so a resumed epoch also sees the same images.

    loader = train_loader(dataset, 256, seed=0, workers=8, pipeline="tensor", device="cuda")
    data.set_epoch(loader, epoch, start_batch)
    for images, labels in loader:  # images [256, 3, 224, 224] float32 on the device
        ...
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import data

from .config import PIPELINES  # noqa: E402  (the names live in config)
#: RandomResizedCrop's defaults: the crop's share of the image area and its aspect ratio (w/h).
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
JPEG_MAGIC = b"\xff\xd8\xff"


class EncodedImages(Dataset):
    """The files of an ImageFolder dataset as ``(bytes, label)``: all a tensor-path worker does is read."""

    def __init__(self, folder):
        self.samples = list(folder.samples)
        self.classes, self.num_classes = folder.classes, len(folder.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            return Path(path).read_bytes(), label, path
        except OSError as e:
            return data.Unreadable(path, f"{type(e).__name__}: {e.strerror or e}"), label, path


def _collate_files(batch):
    """``(blobs, labels, paths)``: the bytes (or :class:`classsel.data.Unreadable`) as a list."""
    blobs, labels, paths = zip(*batch)
    return list(blobs), torch.tensor(labels), list(paths)


def crop_boxes(sizes: torch.Tensor, generator: torch.Generator, scale=SCALE, ratio=RATIO,
               attempts: int = 10) -> torch.Tensor:
    """RandomResizedCrop's boxes ``[n, 4]`` (top, left, height, width) for image sizes ``[n, 2]`` (h, w).

    Per image: up to ``attempts`` draws of an area share uniform in ``scale`` and a log
    aspect ratio uniform in ``log(ratio)``; the first box that fits is placed uniformly.
    If none fits: the whole image, cut to the nearest ratio in ``ratio``, centred.
    """
    n = sizes.shape[0]
    h, w = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    share = scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=generator, dtype=torch.float64)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, attempts, generator=generator,
                                                                 dtype=torch.float64))
    area = share * h * w
    cw, ch = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = torch.where(fits.any(1), fits.double().argmax(1), 0)
    pick = lambda t: t.gather(1, first[:, None])  # noqa: E731
    ch, cw = pick(ch), pick(cw)
    # fallback: whole image, aspect clamped into ratio, centred
    in_ratio = w / h
    fw = torch.where(in_ratio > ratio[1], torch.round(h * ratio[1]), w)
    fh = torch.where(in_ratio < ratio[0], torch.round(w / ratio[0]), h)
    ok = fits.any(1, keepdim=True)
    ch, cw = torch.where(ok, ch, fh), torch.where(ok, cw, fw)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = torch.where(ok, torch.floor(u[:, :1] * (h - ch + 1)), torch.floor((h - ch) / 2))
    left = torch.where(ok, torch.floor(u[:, 1:] * (w - cw + 1)), torch.floor((w - cw) / 2))
    return torch.cat([top, left, ch, cw], 1).long()


def decode(blobs: list, device: torch.device, paths: list[str] | None = None) -> list:
    """RGB ``uint8 [3, H, W]`` images on ``device``: JPEGs in one batched ``decode_jpeg``, others on the CPU.

    A JPEG the device decoder rejects (e.g. CMYK on nvJPEG) is decoded on the CPU instead; a
    file that does not decode there either (or ``Unreadable`` already) gives a
    :class:`classsel.data.Unreadable` naming it (``paths``, else its place in the batch).
    """
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    names = paths or [f"image {i} of the batch" for i in range(len(blobs))]
    out: list = [b if isinstance(b, data.Unreadable) else None for b in blobs]
    raw = {i: torch.frombuffer(bytearray(b), dtype=torch.uint8) for i, b in enumerate(blobs)
           if out[i] is None and len(b)}

    def on_cpu(i):
        if i not in raw:
            return data.Unreadable(names[i], "an empty file")
        try:
            return decode_image(raw[i], mode=ImageReadMode.RGB).to(device)
        except RuntimeError as e:
            return data.Unreadable(names[i], f"{type(e).__name__}: {str(e).splitlines()[0]}")

    jpegs = [i for i in raw if blobs[i][:3] == JPEG_MAGIC]
    if jpegs:
        try:
            for i, im in zip(jpegs, decode_jpeg([raw[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)):
                out[i] = im
        except RuntimeError:  # one file fails the whole batch: find which, image by image
            for i in jpegs:
                out[i] = on_cpu(i)
    for i, im in enumerate(out):
        if im is None:
            out[i] = on_cpu(i)
    return out


def augment(images: list[torch.Tensor], size: int, generator: torch.Generator, scale=SCALE, ratio=RATIO,
            flip: float = 0.5, mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD) -> torch.Tensor:
    """imagenet_transform("train") on a list of decoded images: ``float32 [n, 3, size, size]``.

    Each crop is resized with antialiasing and rounded to uint8, as PIL does, before the
    batch is flipped and normalised.
    """
    from torchvision.transforms.v2 import functional as TF

    sizes = torch.tensor([tuple(im.shape[-2:]) for im in images])
    boxes = crop_boxes(sizes, generator, scale, ratio).tolist()
    flips = (torch.rand(len(images), generator=generator) < flip).tolist()
    device = images[0].device
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8, device=device)
    for i, (im, (top, left, h, w), mirror) in enumerate(zip(images, boxes, flips)):
        crop = TF.resized_crop(im, top, left, h, w, [size, size], antialias=True)
        out[i] = crop.flip(-1) if mirror else crop
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    return (out.float() - m) / s


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """A 64-bit seed for one batch's augmentation, mixed so nearby tuples give unrelated streams."""
    return int(np.random.SeedSequence([seed, epoch, batch, rank]).generate_state(1, dtype=np.uint64)[0])


class TensorLoader:
    """The ``"tensor"`` pipeline: same interface as a :func:`classsel.data.loader` training loader.

    ``sampler``, ``batch_size`` and ``generator`` are those of the byte-reading loader
    inside, so :func:`classsel.data.set_epoch` works on it unchanged.
    """

    def __init__(self, dataset, batch_size: int, image_size: int, seed: int = 0, workers: int = 0,
                 distributed: bool = False, device="cpu", scale=SCALE, ratio=RATIO, flip: float = 0.5,
                 bad_images: str = "stop"):
        self.files = data.loader(EncodedImages(dataset), batch_size, train=True, seed=seed, workers=workers,
                                 distributed=distributed, collate_fn=_collate_files)
        self.bad_images = data.BadImages(bad_images, "train")
        self.dataset = dataset
        self.sampler, self.batch_size, self.generator = self.files.sampler, self.files.batch_size, self.files.generator
        self.image_size, self.device = image_size, torch.device(device)
        self.scale, self.ratio, self.flip = scale, ratio, flip

    def __len__(self) -> int:
        return len(self.files)

    def close(self) -> None:
        """Stop the worker processes of the byte-reading loader (:func:`classsel.data.close`)."""
        data.close(self.files)

    def __iter__(self):
        s = self.sampler
        with data.closed_on_error(self.files):
            for b, (blobs, labels, paths) in enumerate(self.files, start=s.start // self.batch_size):
                g = torch.Generator().manual_seed(batch_seed(s.seed, s.epoch, b, s.rank))
                decoded, labels = self.bad_images.keep(decode(blobs, self.device, paths), labels)
                yield augment(decoded, self.image_size, g, self.scale, self.ratio, self.flip), labels

    @property
    def skipped(self) -> list:
        """The unreadable images left out so far (``bad_images="skip"``)."""
        return self.bad_images.skipped


def train_loader(dataset, batch_size: int, seed: int = 0, workers: int = 0, distributed: bool = False,
                 pipeline: str = "pil", device="cpu", image_size: int = 224, bad_images: str = "stop"):
    """The training loader of ``pipeline`` (one of :data:`PIPELINES`) for ``dataset``.

    ``"pil"`` returns ``data.loader(dataset, batch_size, train=True, ...)`` (``device`` and
    ``image_size`` unused: the dataset's transform crops); ``"tensor"`` needs an
    ImageFolder dataset (it reads ``dataset.samples``) and yields images on ``device``. An
    unreadable image file stops either, naming it, or (``bad_images="skip"``) is left out and
    kept in the loader's ``skipped``.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {PIPELINES}")
    if pipeline == "pil":
        return data.loader(dataset, batch_size, train=True, seed=seed, workers=workers, distributed=distributed,
                           bad_images=bad_images)
    if not hasattr(dataset, "samples"):
        raise ValueError(f"pipeline='tensor' decodes image files and needs an ImageFolder dataset "
                         f"(dataset='imagefolder'), got {type(dataset).__name__}; use pipeline='pil'")
    return TensorLoader(dataset, batch_size, image_size, seed=seed, workers=workers, distributed=distributed,
                        device=device, bad_images=bad_images)
