"""Benchmarks: the cost of each measurement against the work it rides on.

``python -m classsel.bench [--quick] [--device cpu|cuda] [--only SECTION ...]``. Every
comparison runs its sides alternately in one process (A, B, A, B, ...) and reports the
median time of each and their ratio, so all sides see the same machine state.

Sections ``measure``, ``regularizer``, ``cka``, ``ablation`` (issue 2, CPU-scale models):
SI measurement <= 1.03x plain inference (and, on the CPU, faster in pieces of
:data:`classsel.models.CPU_CHUNK` images than in the mnist preset's batches of 500), a regularised
step <= 1.10x a plain step, all-pairs CKA <= 1.25x plain inference, fast ablation curves >= 2x the
naive re-run.
Section ``memory``: the ``mnist`` preset's training step and ablation curves in NCHW against
channels_last, the memory format the preset uses.

Section ``imagenet`` (issue 14; the default on CUDA, with all the others): torchvision
ResNet-50 training at ``--image-size`` (224) and ``--batch`` (256) on synthetic data
already on the device, fp32/NCHW against bf16/channels_last (goal >= 2.5x) and
bf16/channels_last with ``torch.compile``; the regularised step against the plain one
(<= 1.10x), SI measurement (<= 1.05x) and all-pairs CKA (<= 1.25x) against one plain
inference pass, CKA against torch-cka. Small on a CPU:
``python -m classsel.bench --device cpu --only imagenet --image-size 64 --batch 8 --classes 10``.

Section ``runs`` (issue 12): runs per hour on the ``mnist`` preset, ``--runs`` (4) runs of
``--run-epochs`` (1) epochs trained one after the other in this process (``jobs=1``) against
the same runs trained at once by the default pool (:mod:`classsel.parallel`), the sides in
turn ``--rounds`` (2) times, each time in a temporary run store of its own; the median of
each side (goal >= 1.5x on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from . import ablation, ablation_reference, cka, parallel, runs
from .config import MODULES, REGULARIZED, resolve
from .models import CPU_CHUNK, build, check_chunk, describe, pieces
from .regularizer import SelectivityRegularizer
from .selectivity import measure


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(fns, device, repeats: int, warmup: int = 1) -> list[float]:
    """Median seconds of each of ``fns``, run in turn ``repeats`` times after ``warmup`` calls each."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def side_by_side(a, b, device, repeats: int) -> tuple[float, float]:
    """Median seconds of ``a()`` and ``b()``, run alternately after one warm-up each."""
    ta, tb = alternate([a, b], device, repeats)
    return ta, tb


def report(name: str, ta: float, tb: float, a: str, b: str, goal: str) -> dict:
    ratio = ta / tb
    print(f"{name:<44} {a} {ta * 1e3:9.1f} ms   {b} {tb * 1e3:9.1f} ms   ratio {ratio:5.2f}x   goal {goal}",
          flush=True)
    return {"benchmark": name, "ratio": ratio, "a_ms": ta * 1e3, "b_ms": tb * 1e3, "goal": goal}


def setups(device, quick: bool):
    """(label, model, loader) pairs: the CPU-scale model and ResNet-50."""
    g = torch.Generator().manual_seed(0)
    n_small, n_big, size = (500, 64, 64) if quick else (1000, 128, 64 if device.type == "cpu" else 224)
    torch.manual_seed(0)
    small = build("resnet50_narrow", 10, in_channels=1).to(device).eval()
    small_data = TensorDataset(torch.randn(n_small, 1, 28, 28, generator=g), torch.arange(n_small) % 10)
    big = build("resnet50", 10).to(device).eval()
    big_data = TensorDataset(torch.randn(n_big, 3, size, size, generator=g), torch.arange(n_big) % 10)
    return [
        (f"resnet50_narrow 1x28x28 n={n_small}", small, DataLoader(small_data, batch_size=250), 10),
        (f"resnet50 3x{size}x{size} n={n_big}", big, DataLoader(big_data, batch_size=32), 10),
    ]


@torch.no_grad()
def plain_inference(model, loader, device, chunk: int | None = None):
    """Forward passes over ``loader``: its batches whole, or in pieces of at most ``chunk`` images."""
    for x, _ in loader:
        for piece in pieces(len(x), chunk):
            model(x[piece].to(device))


def bench_measure(device, quick, repeats):
    out = []
    for label, model, loader, classes in setups(device, quick):
        # the plain passes cut as measure cuts them by default, so the ratio is measurement's own cost
        chunk = check_chunk(None, device)
        ta, tb = side_by_side(lambda: measure(model, loader, classes, device),
                              lambda: plain_inference(model, loader, device, chunk), device, repeats)
        out.append(report(f"SI measure vs inference [{label}]", ta, tb, "measure", "plain", "<= 1.03x"))
    if device.type == "cpu":  # the mnist preset's evaluation batches of 500, cut into pieces (the default) or whole
        label, model, loader, classes = setups(device, quick)[0]
        whole = DataLoader(loader.dataset, batch_size=500)
        ta, tb = side_by_side(lambda: measure(model, whole, classes, device, chunk=500),
                              lambda: measure(model, whole, classes, device), device, repeats)
        out.append(report(f"SI measure in pieces of {CPU_CHUNK} vs batches of 500 [{label}]", ta, tb,
                          "batches", "pieces", "> 1x"))
    return out


def bench_regularizer(device, quick, repeats):
    out = []
    for label, model, loader, classes in setups(device, quick):
        model = copy.deepcopy(model).train()
        x, y = next(iter(loader))
        x, y = x.to(device), y.to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        reg = SelectivityRegularizer(model, classes, REGULARIZED)

        def step(regularised):
            with reg if regularised else torch.enable_grad():
                logits = model(x)
            loss = F.cross_entropy(logits, y)
            if regularised:
                loss = loss + 20.0 * reg.mu_si(y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        ta, tb = side_by_side(lambda: step(True), lambda: step(False), device, repeats)
        out.append(report(f"regularised step vs plain [{label}]", ta, tb, "reg", "plain", "<= 1.10x"))
    return out


def bench_cka(device, quick, repeats):
    out = []
    layers = [*MODULES, "fc"]
    for label, model, loader, _ in setups(device, quick):
        ta, tb = side_by_side(lambda: cka.cka_matrix(model, loader, layers, device),
                              lambda: plain_inference(model, loader, device), device, repeats)
        out.append(report(f"CKA all pairs vs inference [{label}]", ta, tb, "cka", "plain", "<= 1.25x"))
        out.append(_vs_torch_cka(label, model, loader, layers, device, max(1, repeats // 2)))
    return out


def _vs_torch_cka(label, model, loader, layers, device, repeats):
    import warnings

    from torch_cka import CKA

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # torch-cka leaves its hooks on the models it is given: give it copies.
            c = CKA(copy.deepcopy(model), copy.deepcopy(model), "a", "b", layers, layers, device=str(device))
            c.compare(loader if isinstance(loader, DeviceBatches) else _quiet(loader))

    ta, tb = side_by_side(lambda: cka.cka_matrix(model, loader, layers, device), theirs, device, repeats)
    return report(f"CKA vs torch-cka (float32) [{label}]", ta, tb, "ours", "torch-cka", "< 1x")


class _quiet(DataLoader):
    """The loader as torch-cka wants it (it reads ``.dataset``), unchanged otherwise."""

    def __init__(self, loader):
        super().__init__(loader.dataset, batch_size=loader.batch_size)


def bench_ablation(device, quick, repeats):
    out, cases = [], []
    for label, model, loader, _ in setups(device, quick)[:1] if quick else setups(device, quick):
        g = torch.Generator().manual_seed(0)
        si = {b: torch.rand(n, generator=g) for b, n in _units(model).items()}
        cases.append((label, model, loader, si))
        kw = dict(ks=None, orders=("selective", "random"), draws=3, seed=0, device=device)
        naive = ablation_reference.ablation_curve_naive
        ta, tb = side_by_side(lambda: ablation.ablation_curve(model, loader, list(MODULES), si, **kw),
                              lambda: [naive(model, loader, m, si, **kw) for m in MODULES],
                              device, max(1, repeats // 3))
        out.append(report(f"ablation curves, 4 modules vs naive [{label}]", tb, ta, "naive", "fast", ">= 2x"))
    if device.type == "cpu":  # the loader's batches cut into pieces (the default) or run whole
        label, model, loader, si = cases[0]
        whole = DataLoader(loader.dataset, batch_size=500)
        kw = dict(draws=2, seed=0, device=device)
        ta, tb = side_by_side(lambda: ablation.ablation_curve(model, whole, list(MODULES), si, **kw),
                              lambda: ablation.ablation_curve(model, whole, list(MODULES), si, chunk=500, **kw),
                              device, max(1, repeats // 3))
        out.append(report(f"ablation curves in pieces of {CPU_CHUNK} vs batches of 500 [{label}]", tb, ta,
                          "batches", "pieces", "> 1x"))
        out += bench_stacking(device, quick, repeats)
    return out


def bench_stacking(device, quick, repeats, stacked: int = 2**22):
    """The build's ablation (6 levels, 2 random draws) of the mnist preset's ResNet and ViT, with levels
    stacked into batches of up to ``stacked`` elements per block output against the default
    (:data:`classsel.ablation.STACK_ELEMENTS`), on the threads a build's worker has (its share of the
    cores with one worker per core: one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(parallel.threads_per_job(parallel.cores()) if device.type == "cpu" else threads)
    try:
        return _stacking(device, quick, repeats, stacked)
    finally:
        torch.set_num_threads(threads)


def _stacking(device, quick, repeats, stacked):
    from .architectures import layout

    g = torch.Generator().manual_seed(0)
    n = 250 if quick else 1000
    loader = DataLoader(TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.arange(n) % 10), batch_size=500)
    out = []
    for arch, options in (("resnet50_narrow", {}), ("vit_tiny", {"image_size": 28})):
        torch.manual_seed(0)
        model = build(arch, 10, in_channels=1, **options).to(device).eval()
        if arch.startswith("resnet"):
            model = model.to(memory_format=torch.channels_last)
        modules = list(layout(arch).modules)
        blocks = {m: describe(model).blocks(model, m) for m in modules}
        si = {b.name: torch.rand(b.channels, generator=g) for m in modules for b in blocks[m]}
        ks = {m: ablation.default_ks(blocks[m][0].channels, 6) for m in modules}
        default = ablation.STACK_ELEMENTS

        def curves(elements):
            ablation.STACK_ELEMENTS = elements
            try:
                return ablation.ablation_curve(model, loader, modules, si, ks=ks, draws=2, seed=0, device=device)
            finally:
                ablation.STACK_ELEMENTS = default

        ta, tb = side_by_side(lambda: curves(stacked), lambda: curves(default), device, max(1, repeats // 3))
        out.append(report(f"ablation, levels stacked to 2**{stacked.bit_length() - 1} vs 2**{default.bit_length() - 1} "
                          f"elements [{arch}]", ta, tb, "stacked", "default", ">= 1x"))
    return out


def bench_memory(device, quick, repeats):
    """The mnist preset's network in NCHW against channels_last (the preset's format): one plain
    training step at its batch of 64, and the four modules' ablation curves."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g).to(device), (torch.arange(64) % 10).to(device)
    torch.manual_seed(0)
    nchw = build("resnet50_narrow", 10, in_channels=1).to(device)
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    ta, tb = side_by_side(training_step(nchw, nchw, x, y, amp=False), training_step(cl, cl, x_cl, y, amp=False),
                          device, repeats * 3)
    out = [report("mnist training step, NCHW vs channels_last", ta, tb, "NCHW", "channels_last", "> 1x")]
    n = 250 if quick else 1000
    loader = DataLoader(TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.arange(n) % 10), batch_size=250)
    si = {block: torch.rand(units, generator=g) for block, units in _units(nchw).items()}
    nchw.eval()
    cl.eval()
    kw = dict(orders=("selective", "random"), draws=2, seed=0, device=device)
    ta, tb = side_by_side(lambda: ablation.ablation_curve(nchw, loader, list(MODULES), si, **kw),
                          lambda: ablation.ablation_curve(cl, loader, list(MODULES), si, **kw),
                          device, max(1, repeats // 2))
    out.append(report("mnist ablation curves, NCHW vs channels_last", ta, tb, "NCHW", "channels_last", "> 1x"))
    return out


def _units(model):
    from .models import bottlenecks

    return {b.name: b.channels for b in bottlenecks(model)}


# --------------------------------------------------------------------------- ImageNet scale (issue 14)


class DeviceBatches(list):
    """``(images, labels)`` batches already on the device, iterated like an evaluation loader.

    ``sampler`` is None (no padding to leave out) and ``dataset`` is the list itself,
    which is all :func:`~classsel.selectivity.measure` and torch-cka read of a loader.
    """

    sampler = None

    @property
    def dataset(self):
        return self


def training_step(net, model, x, y, amp: bool, reg: SelectivityRegularizer | None = None, alpha: float = -20.0):
    """One SGD step as ``classsel.train`` takes it; ``net`` may be ``torch.compile(model)``."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp)

    def step():
        with autocast, (reg if reg is not None else contextlib.nullcontext()):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            objective = loss - alpha * reg.mu_si(y) if reg is not None else loss
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()

    return step


def bench_imagenet(device, args, repeats):
    """ResNet-50 training images/s in three settings, then the measurements' costs at that scale."""
    size, batch, classes = args.image_size, args.batch, args.classes
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device, generator=g)
    y = torch.arange(batch, device=device) % classes
    x_cl = x.contiguous(memory_format=torch.channels_last)
    settings = [("fp32/NCHW", False, False), ("bf16/channels_last", True, False)]
    if not args.no_compile:
        settings.append(("bf16/channels_last+compile", True, True))
    steps, models = [], {}
    for name, amp, compiled in settings:
        torch.manual_seed(0)
        model = build("resnet50", classes).to(device).train()
        if amp:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if compiled else model
        models[name] = model
        steps.append(training_step(net, model, x_cl if amp else x, y, amp))
    label = f"resnet50 3x{size}x{size} batch {batch}"
    # torch.compile compiles in its first calls: three warm-up rounds for every setting
    times = alternate(steps, device, repeats, warmup=3)
    rows = []
    print(f"training images/s [{label}]")
    for (name, _, _), t in zip(settings, times):
        ratio = times[0] / t
        goal = ">= 2.5x fp32" if name == "bf16/channels_last" else "-"
        print(f"  {name:<28} {batch / t:9.1f} images/s  {t * 1e3:9.1f} ms/step  {ratio:5.2f}x fp32/NCHW  goal {goal}",
              flush=True)
        rows.append({"benchmark": f"training {name} [{label}]", "ratio": ratio, "a_ms": t * 1e3,
                     "b_ms": times[0] * 1e3, "images_per_s": batch / t, "goal": goal})
    steps.clear()

    model = models["bf16/channels_last"]
    reg = SelectivityRegularizer(model, classes, REGULARIZED)
    ta, tb = side_by_side(training_step(model, model, x_cl, y, True, reg), training_step(model, model, x_cl, y, True),
                          device, repeats)
    rows.append(report(f"regularised step vs plain, bf16/CL [{label}]", ta, tb, "reg", "plain", "<= 1.10x"))

    # Evaluation as train.py runs it: fp32, the channels_last model, NCHW batches from the loader.
    model.eval()
    n_batches = max(args.batches, -(-classes // batch))  # every class must occur for SI
    labels = torch.arange(n_batches * batch, device=device) % classes
    loader = DeviceBatches((torch.randn(batch, 3, size, size, device=device, generator=g), labels[i::n_batches])
                           for i in range(n_batches))
    label = f"resnet50 3x{size}x{size} {n_batches} batches of {batch}"
    ta, tb = side_by_side(lambda: measure(model, loader, classes, device),
                          lambda: plain_inference(model, loader, device), device, repeats)
    rows.append(report(f"SI measure vs inference [{label}]", ta, tb, "measure", "plain", "<= 1.05x"))
    layers = [*MODULES, "fc"]
    ta, tb = side_by_side(lambda: cka.cka_matrix(model, loader, layers, device),
                          lambda: plain_inference(model, loader, device), device, repeats)
    rows.append(report(f"CKA all pairs vs inference [{label}]", ta, tb, "cka", "plain", "<= 1.25x"))
    rows.append(_vs_torch_cka(label, model, loader, layers, device, max(1, repeats // 2)))
    return rows


# --------------------------------------------------------------------------- input pipeline (issue 14)


def write_jpeg_tree(root, classes: int = 4, per_class: int = 8, size: tuple[int, int] = (500, 375),
                    quality: int = 90, splits=("train", "val"), seed: int = 0) -> Path:
    """An ImageFolder tree of ImageNet-like JPEGs: ``root/<split>/nNNNN/imgNNNN.JPEG``, ``size`` = (w, h).

    Each image is smooth colour structure (a random 8x6 field upsampled bicubically) plus
    mild noise, so it compresses like a photograph (about 100 KB at 500x375, quality 90)
    rather than like noise.
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    for split in splits:
        for c in range(classes):
            folder = root / split / f"n{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
                pixels = np.asarray(field, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img{i:04d}.JPEG",
                                                                          quality=quality)
    return root


def pipeline_rate(loader, device, batches: int) -> float:
    """Images per second of ``batches`` training batches from ``loader`` (after one warm-up batch)."""
    from . import data

    data.set_epoch(loader, 0)
    it = iter(loader)
    next(it)
    _sync(device)
    t0, n = time.perf_counter(), 0
    for _, (images, labels) in zip(range(batches), it):
        n += len(labels)
    _sync(device)
    return n / (time.perf_counter() - t0)


def bench_pipeline(device, args, repeats):
    """Training-transform throughput of the PIL workers and the tensor path, side by side per worker count."""
    import tempfile

    from . import data, pipeline

    with tempfile.TemporaryDirectory() as tmp:
        if args.tree:
            root = Path(args.tree)
        else:
            per_class = -(-args.batch * (args.pipeline_batches + 1) // 4)
            root = write_jpeg_tree(Path(tmp) / "tree", classes=4, per_class=per_class, splits=("train",))
        ds = data.imagefolder(root, "train", image_size=args.image_size)
        workers = args.workers if args.workers is not None else ((4, 8, 16) if device.type == "cuda" else (0, 1, 2))
        print(f"input pipeline [{len(ds)} JPEGs in {root}, crops {args.image_size}, batch {args.batch}, "
              f"{args.pipeline_batches} batches; training transforms]", flush=True)
        rows = []
        for n in workers:
            rates = {}
            for name in pipeline.PIPELINES:
                loader = pipeline.train_loader(ds, args.batch, workers=n, pipeline=name, device=device,
                                               image_size=args.image_size)
                rates[name] = statistics.median(pipeline_rate(loader, device, args.pipeline_batches)
                                                for _ in range(max(1, repeats // 3)))
                del loader  # its persistent workers end here
            ratio = rates["tensor"] / rates["pil"]
            print(f"  workers {n:>2}   pil {rates['pil']:8.1f} images/s   tensor ({device.type} decode) "
                  f"{rates['tensor']:8.1f} images/s   tensor/pil {ratio:5.2f}x", flush=True)
            rows.append({"benchmark": f"pipeline workers {n}", "ratio": ratio, "pil_images_per_s": rates["pil"],
                         "tensor_images_per_s": rates["tensor"], "goal": ">= bf16 training images/s"})
    return rows


@contextlib.contextmanager
def _temporary_store():
    """A run store of its own for one side (its training processes inherit it), removed afterwards."""
    before = os.environ.get("CLASSSEL_RUNS")
    with tempfile.TemporaryDirectory(prefix="classsel-bench-") as store:
        os.environ["CLASSSEL_RUNS"] = store
        try:
            yield
        finally:
            if before is None:
                del os.environ["CLASSSEL_RUNS"]
            else:
                os.environ["CLASSSEL_RUNS"] = before


def bench_runs(device, args, repeats):
    """Runs per hour on the mnist preset: one at a time here against the concurrent pool."""
    cfg = resolve("mnist", epochs=args.run_epochs, device=device.type, progress=False)
    seeds = list(range(args.runs))
    jobs = parallel.check_jobs(args.jobs, [runs.Run(cfg, s) for s in seeds])

    def trainer(j: int):
        def train():
            with _temporary_store():
                runs.ensure(cfg, seeds, jobs=j, log=lambda *a: None)
        return train

    one, many = alternate([trainer(1), trainer(jobs)], device, args.rounds, warmup=0)
    per_hour = [args.runs * 3600 / t for t in (one, many)]
    name = f"mnist runs/hour ({args.runs} runs x {args.run_epochs} epochs, {args.rounds} rounds)"
    threads = {"jobs=1": torch.get_num_threads(), f"jobs={jobs}": parallel.threads_per_job(jobs)}
    sides = "   ".join(f"{side} ({n} thread{'s' * (n > 1)} each) {rate:6.1f}"
                       for (side, n), rate in zip(threads.items(), per_hour))
    print(f"{name:<44} {sides}   ratio {one / many:5.2f}x   goal >= 1.5x", flush=True)
    return [{"benchmark": name, "ratio": one / many, "a_ms": one / args.runs * 1e3,
             "b_ms": many / args.runs * 1e3, "goal": ">= 1.5x"}]


def bench_book(device, args, repeats):
    """The cold build of the book on a preset, in its three parts measured in one run, in a store of its
    own: the plan's training, its analyses, then the book build, whose notebooks only read. Prints each
    part's wall time and the ratio of the whole cold build to its training (same ``jobs``)."""
    import shutil
    import subprocess
    import sys

    from . import reproduce
    from .plan import Plan, Training, fulfil

    preset, jobs = args.book_preset, args.jobs
    keep = args.book_store is not None
    if keep:
        os.environ["CLASSSEL_RUNS"] = str(Path(args.book_store).resolve())
    with contextlib.nullcontext() if keep else _temporary_store():
        plan = reproduce.request(preset).linked()  # the trainings as the whole plan has them (branched, measuring)
        trainings = Plan([t for t in plan if isinstance(t, Training)])
        costs = {kind: sum(t.cost() for t in plan if t.kind == kind) for kind in ("train", "ablation", "cka")}
        seconds = {}
        for part, tasks in (("training", trainings), ("analyses", plan)):
            t0 = time.perf_counter()
            fulfil(tasks, jobs=jobs, progress=False, log=lambda *a: None)
            seconds[part] = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="classsel-book-") as out:
            jb = shutil.which("jupyter-book", path=os.path.dirname(sys.executable)) or "jupyter-book"
            t0 = time.perf_counter()
            r = subprocess.run([jb, "build", "book", "--path-output", out], cwd=Path(__file__).resolve().parents[1],
                               env={**os.environ, "CLASSSEL_PRESET": preset}, capture_output=True, text=True)
            seconds["book build (notebooks read only)"] = time.perf_counter() - t0
            if r.returncode:
                raise RuntimeError(f"the book build failed: {(r.stdout + r.stderr)[-3000:]}")
        size = sum(f.stat().st_size for f in Path(os.environ["CLASSSEL_RUNS"]).rglob("*") if f.is_file())
    cold = sum(seconds.values())
    print(f"book on {preset}: {len(trainings)} runs ({costs['train']} steps to train), "
          f"{len(plan) - len(trainings)} analyses ({costs['ablation'] + costs['cka']} step-equivalents)")
    for part, t in seconds.items():
        print(f"  {part:<36} {t / 60:7.2f} min")
    ratio = cold / seconds["training"]
    print(f"  {'cold build':<36} {cold / 60:7.2f} min   cold build / training {ratio:5.2f}x   goal <= 1.3x", flush=True)
    print(f"  run store after the build: {size / 1e9:.2f} GB", flush=True)
    return [{"benchmark": f"book {preset}", "ratio": ratio, **{k: v for k, v in seconds.items()}, "goal": "<= 1.3x"}]


SECTIONS = {"measure": bench_measure, "regularizer": bench_regularizer, "cka": bench_cka, "ablation": bench_ablation,
            "memory": bench_memory}
GPU_SECTIONS = {"imagenet": bench_imagenet, "pipeline": bench_pipeline}
#: Sections that train whole runs (minutes), run only when asked for with --only.
RUN_SECTIONS = {"runs": bench_runs, "book": bench_book}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m classsel.bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--only", nargs="*", choices=[*SECTIONS, *GPU_SECTIONS, *RUN_SECTIONS],
                   help=f"sections to run (default: {', '.join(SECTIONS)}, and on CUDA also "
                        f"{', '.join(GPU_SECTIONS)}; {', '.join(RUN_SECTIONS)} only when named)")
    i = p.add_argument_group("imagenet section")
    i.add_argument("--batch", type=int, default=256, help="training batch (default 256)")
    i.add_argument("--image-size", type=int, default=224)
    i.add_argument("--classes", type=int, default=1000)
    i.add_argument("--batches", type=int, default=4, help="evaluation batches for SI and CKA (at least one per class)")
    i.add_argument("--no-compile", action="store_true", help="leave out the torch.compile setting")
    q = p.add_argument_group("pipeline section")
    q.add_argument("--tree", help="an ImageFolder tree to read (default: a generated one of 500x375 JPEGs)")
    q.add_argument("--workers", type=int, nargs="+", help="loader workers to try (default 4 8 16 on CUDA, 0 1 2)")
    q.add_argument("--pipeline-batches", type=int, default=4, help="batches timed per measurement")
    q.add_argument("--write-tree", metavar="DIR",
                   help="only write a generated tree (train and val) to DIR, e.g. for an end-to-end run, and exit")
    q.add_argument("--tree-classes", type=int, default=10)
    q.add_argument("--tree-per-class", type=int, default=50)
    r = p.add_argument_group("runs section")
    r.add_argument("--runs", type=int, default=4, help="mnist runs trained by each side (default 4)")
    r.add_argument("--run-epochs", type=int, default=1, help="epochs of each run (default 1)")
    r.add_argument("--jobs", type=int, help="processes of the concurrent side (default: the pool's default)")
    r.add_argument("--rounds", type=int, default=2, help="times each side is measured, in turn (default 2)")
    r.add_argument("--book-preset", default="mnist", help="the book section's preset (default mnist; smoke: minutes)")
    r.add_argument("--book-store", help="an empty run store to build into and keep (default: a temporary one)")
    args = p.parse_args(argv)
    checked = ("batch", "image_size", "classes", "batches", "pipeline_batches", "runs", "run_epochs", "jobs",
               "rounds")
    for name in checked:
        if name == "jobs" and args.jobs is None:
            continue
        if getattr(args, name) < 1 or (name == "classes" and args.classes < 2):
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} is not valid: expected an integer >= "
                    f"{2 if name == 'classes' else 1}")
    if args.write_tree:
        root = write_jpeg_tree(args.write_tree, classes=args.tree_classes, per_class=args.tree_per_class)
        print(f"wrote {args.tree_classes} classes x {args.tree_per_class} JPEGs per split to {root}")
        return []
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"device {device}{name}, torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {repeats}")
    sections = args.only or [*SECTIONS, *(GPU_SECTIONS if device.type == "cuda" else ())]
    rows = []
    for section in sections:
        if section in SECTIONS:
            rows += SECTIONS[section](device, args.quick, repeats)
        elif section in RUN_SECTIONS:
            rows += RUN_SECTIONS[section](device, args, repeats)
        else:
            rows += GPU_SECTIONS[section](device, args, repeats)
    return rows


if __name__ == "__main__":
    main()
