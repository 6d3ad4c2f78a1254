"""The input pipeline: PIL workers and device decoding give the same label stream and comparable images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from torchvision import transforms as T

from classsel import data, pipeline
from classsel.bench import write_jpeg_tree

NO_CUDA = "needs a CUDA device: torch.cuda.is_available() is False on this machine"
DEVICES = ["cpu", pytest.param("cuda", marks=(pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                    reason=NO_CUDA)))]
# PIL and torchvision both decode with libjpeg-turbo, but of different builds; nvJPEG
# upsamples chroma its own way. Bounds on the decoded pixels (0..255), per pixel and mean.
DECODER_MAX = {"cpu": 4, "cuda": 24}
DECODER_MEAN = {"cpu": 0.5, "cuda": 2.0}
BATCH = 4


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """3 classes x 6 ImageNet-like JPEGs of 120x90 (small: the tests decode every image)."""
    return write_jpeg_tree(tmp_path_factory.mktemp("jpegs"), classes=3, per_class=6, size=(120, 90), splits=("train",))


@pytest.fixture(scope="module")
def square_tree(tmp_path_factory):
    """JPEGs of exactly the crop size: a whole-image crop is then no resize at all."""
    return write_jpeg_tree(tmp_path_factory.mktemp("square"), classes=2, per_class=4, size=(32, 32), splits=("train",))


def epoch(loader, number, start=0):
    data.set_epoch(loader, number, start)
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]).tolist()


def test_jpeg_tree_is_an_imagefolder_of_jpegs(tree):
    ds = data.imagefolder(tree, "train", image_size=32)
    assert len(ds) == 18 and ds.classes == ["n0000", "n0001", "n0002"]
    from PIL import Image

    with Image.open(ds.samples[0][0]) as im:
        assert im.format == "JPEG" and im.size == (120, 90) and im.mode == "RGB"


@pytest.mark.parametrize("workers", [0, 2])
def test_same_label_stream_as_pil(tree, workers):
    ds = data.imagefolder(tree, "train", image_size=32)
    pil = pipeline.train_loader(ds, BATCH, seed=3, workers=workers, pipeline="pil")
    tensor = pipeline.train_loader(ds, BATCH, seed=3, workers=workers, pipeline="tensor", image_size=32)
    assert len(pil) == len(tensor) == 18 // BATCH
    for e in (0, 1):
        x_pil, y_pil = epoch(pil, e)
        x_ten, y_ten = epoch(tensor, e)
        assert y_pil == y_ten and len(y_ten) == 16
        assert x_pil.shape == x_ten.shape == (16, 3, 32, 32) and x_pil.dtype == x_ten.dtype == torch.float32
    assert epoch(tensor, 0)[1] != epoch(tensor, 1)[1]


def test_images_are_normalised_like_pil(tree):
    ds = data.imagefolder(tree, "train", image_size=32)
    x, _ = epoch(pipeline.train_loader(ds, BATCH, seed=0, pipeline="tensor", image_size=32), 0)
    mean = torch.tensor(data.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD).view(1, 3, 1, 1)
    pixels = (x * std + mean) * 255
    # what ToTensor + Normalize of uint8 pixels gives: whole numbers in 0..255 after undoing it
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
    assert (pixels - pixels.round()).abs().max() < 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_whole_image_crop_matches_pil_pixels(square_tree, device):
    """Crop = the whole image, no flip: both paths reduce to decode + normalise; pixels agree within
    the JPEG decoders' differences."""
    ds = data.imagefolder(square_tree, "train", image_size=32)
    ds.transform = T.Compose([T.RandomResizedCrop(32, scale=(1, 1), ratio=(1, 1)), T.ToTensor(),
                              T.Normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)])
    pil = pipeline.train_loader(ds, BATCH, seed=1, pipeline="pil")
    tensor = pipeline.TensorLoader(ds, BATCH, 32, seed=1, device=device, scale=(1, 1), ratio=(1, 1), flip=0.0)
    x_pil, y_pil = epoch(pil, 0)
    x_ten, y_ten = epoch(tensor, 0)
    assert y_pil == y_ten
    assert x_ten.device.type == device
    std = torch.tensor(data.IMAGENET_STD).view(1, 3, 1, 1)
    diff = ((x_ten.cpu() - x_pil) * std * 255).abs()
    assert diff.max() <= DECODER_MAX[device] and diff.mean() <= DECODER_MEAN[device]
    # and a flip of every image mirrors them exactly
    flipped = pipeline.TensorLoader(ds, BATCH, 32, seed=1, device=device, scale=(1, 1), ratio=(1, 1), flip=1.0)
    assert torch.equal(epoch(flipped, 0)[0], x_ten.flip(-1))


def test_resumed_epoch_gives_the_same_rest(tree):
    ds = data.imagefolder(tree, "train", image_size=32)
    loader = pipeline.train_loader(ds, BATCH, seed=5, pipeline="tensor", image_size=32)
    x, y = epoch(loader, 2)
    resumed = pipeline.train_loader(ds, BATCH, seed=5, pipeline="tensor", image_size=32)
    x_rest, y_rest = epoch(resumed, 2, start=2)
    assert y_rest == y[2 * BATCH:] and torch.equal(x_rest, x[2 * BATCH:])
    # the PIL path resumes its label stream the same way (its augmentations are not replayed)
    pil = pipeline.train_loader(ds, BATCH, seed=5, pipeline="pil")
    assert epoch(pil, 2, start=2)[1] == y_rest


def test_crop_boxes_follow_random_resized_crop():
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([[375, 500], [500, 375], [90, 120], [64, 64]]).repeat(500, 1)
    boxes = pipeline.crop_boxes(sizes, g)
    top, left, h, w = boxes.T
    H, W = sizes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    share, aspect = (h * w).double() / (H * W), w.double() / h
    # rounding the sides to pixels moves share and aspect slightly past the drawn range
    assert share.min() >= 0.08 * 0.9 and share.max() <= 1.0
    assert aspect.min() >= 0.75 * 0.9 and aspect.max() <= 4 / 3 * 1.1
    # the same distribution as torchvision's sampler: compare means over 2000 draws each
    torch.manual_seed(0)
    ref = torch.tensor([T.RandomResizedCrop.get_params(torch.empty(1, int(hh), int(ww)), [0.08, 1.0], [3 / 4, 4 / 3])
                        for hh, ww in sizes.tolist()])
    ref_share = (ref[:, 2] * ref[:, 3]).double() / (H * W)
    assert float(share.mean()) == pytest.approx(float(ref_share.mean()), abs=0.03)
    ref_aspect = (ref[:, 3] / ref[:, 2]).double()
    assert float(aspect.log().mean()) == pytest.approx(float(ref_aspect.log().mean()), abs=0.03)
    assert torch.equal(pipeline.crop_boxes(sizes, torch.Generator().manual_seed(0)), boxes)


def test_crop_boxes_fall_back_to_a_centred_crop():
    # an area share of 1 at aspect 2 never fits a 100x100 image: whole width, height cut to the ratio
    g = torch.Generator().manual_seed(0)
    boxes = pipeline.crop_boxes(torch.tensor([[100, 100], [40, 100]]), g, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    assert boxes.tolist() == [[25, 0, 50, 100], [0, 10, 40, 80]]


def test_decode_reads_png_and_jpeg(tmp_path, imagefolder_tree):
    root = imagefolder_tree(tmp_path / "mixed", splits=("train",))  # alternating PNG and JPEG
    ds = data.imagefolder(root, "train", image_size=16)
    blobs = [pipeline.EncodedImages(ds)[i][0] for i in range(4)]
    images = pipeline.decode(blobs, torch.device("cpu"))
    from PIL import Image

    for (path, _), im in zip(ds.samples[:4], images):
        with Image.open(path) as ref:
            assert im.shape == (3, ref.height, ref.width) and im.dtype == torch.uint8
            if ref.format == "PNG":  # lossless: exactly PIL's pixels
                assert torch.equal(im, torch.from_numpy(np.asarray(ref.convert("RGB"))).permute(2, 0, 1))


def test_bad_pipeline_and_dataset_are_named():
    with pytest.raises(ValueError, match=r"'dali'.*'pil', 'tensor'"):
        pipeline.train_loader(None, 4, pipeline="dali")
    ds = data.mnist5k("train", per_class=2)
    with pytest.raises(ValueError, match="ImageFolder.*LabelledImages.*pipeline='pil'"):
        pipeline.train_loader(ds, 4, pipeline="tensor")


@pytest.fixture(scope="module")
def broken_tree(tmp_path_factory):
    """The JPEG tree with one file cut short and one that is no image at all."""
    import shutil

    root = tmp_path_factory.mktemp("broken") / "tree"
    shutil.copytree(write_jpeg_tree(tmp_path_factory.mktemp("jpegs2"), classes=2, per_class=6, size=(48, 40),
                                    splits=("train",)), root)
    files = sorted((root / "train").rglob("*.JPEG"))
    cut, junk = files[1], files[8]
    cut.write_bytes(cut.read_bytes()[:300])
    junk.write_bytes(b"not an image")
    return root, {str(cut), str(junk)}


@pytest.mark.parametrize("kind", ["pil", "tensor"])
@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_is_named_or_left_out_and_counted(broken_tree, kind, workers, capfd):
    root, broken = broken_tree
    ds = data.imagefolder(root, "train", image_size=16)
    stop = pipeline.train_loader(ds, BATCH, seed=0, workers=workers, pipeline=kind, image_size=16)
    with pytest.raises(data.UnreadableImage) as err:
        epoch(stop, 0)
    assert any(str(err.value).startswith(f"unreadable image {b} in the train data (") for b in broken), err.value
    assert "--bad-images skip" in str(err.value)
    skip = pipeline.train_loader(ds, BATCH, seed=0, workers=workers, pipeline=kind, image_size=16, bad_images="skip")
    _, labels = epoch(skip, 0)
    assert len(labels) == len(ds) - 2 and {b.path for b in skip.skipped} == broken
    assert sorted(labels) == sorted(y for p, y in ds.samples if p not in broken)
    assert capfd.readouterr().err.count("left out unreadable image") == 2
    data.close(skip)  # its workers, before the traceback kept in `err` leaves it to the garbage collector


def test_a_loader_stopped_by_an_error_or_closed_leaves_no_worker_for_the_garbage_collector(broken_tree):
    """The workers of a loader that an error stopped, and of one closed, have ended before the collector
    sees them: freed in a reference cycle, each would cost torch's 5 s join timeout (its queues' feeder
    threads are finalised first), which stalled whatever test ran next by 20 to 40 s."""
    import multiprocessing

    earlier = set(multiprocessing.active_children())  # another test's, if any: not this one's business

    def ours():
        return set(multiprocessing.active_children()) - earlier

    root, _ = broken_tree
    ds = data.imagefolder(root, "train", image_size=16)
    for kind in ("pil", "tensor"):
        stop = pipeline.train_loader(ds, BATCH, seed=0, workers=2, pipeline=kind, image_size=16)
        with pytest.raises(data.UnreadableImage):
            epoch(stop, 0)
        assert not ours(), kind
    fine = data.loader(data.imagefolder(root, "train", image_size=16), BATCH, train=False, workers=2,
                       bad_images="skip")
    with pytest.raises(data.UnreadableImage):
        list(fine)
    assert not ours()
    clean = data.loader(TensorDataset(torch.zeros(8, 1), torch.zeros(8)), 4, train=True, workers=2)
    assert len(list(clean)) == 2 and len(ours()) == 2  # persistent
    data.close(clean)
    assert not ours()
    assert len(list(clean)) == 2  # iterated again: new workers
    data.close(clean)


def test_an_unreadable_validation_image_stops_even_when_training_skips(broken_tree):
    root, broken = broken_tree
    ds = data.imagefolder(root, "train", image_size=16)
    loader = data.loader(ds, BATCH, train=False, bad_images="skip")
    with pytest.raises(data.UnreadableImage, match="in the val data .*: remove or replace the file$"):
        list(loader)


def test_a_batch_of_only_unreadable_images_stops(tmp_path):
    root = write_jpeg_tree(tmp_path, classes=1, per_class=2, size=(32, 32), splits=("train",))
    for f in (root / "train").rglob("*.JPEG"):
        f.write_bytes(b"junk")
    ds = data.imagefolder(root, "train", image_size=16)
    for kind in pipeline.PIPELINES:
        loader = pipeline.train_loader(ds, 2, pipeline=kind, image_size=16, bad_images="skip")
        with pytest.raises(data.UnreadableImage, match="every image of a batch is unreadable"):
            epoch(loader, 0)
