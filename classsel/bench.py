"""Benchmarks: the cost of each measurement against the work it rides on.

``python -m classsel.bench [--quick] [--device cpu|cuda]``. Every comparison runs its
two sides alternately in one process (A, B, A, B, ...) and reports the median time
of each and their ratio, so both sides see the same machine state. Goals (issue 2):
SI measurement <= 1.03x plain inference, a regularised step <= 1.10x a plain step,
all-pairs CKA <= 1.25x plain inference, fast ablation curves >= 2x the naive re-run.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from . import ablation, ablation_reference, cka
from .models import MODULES, build
from .regularizer import SelectivityRegularizer
from .selectivity import measure


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def side_by_side(a, b, device, repeats: int) -> tuple[float, float]:
    """Median seconds of ``a()`` and ``b()``, run alternately after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


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
def plain_inference(model, loader, device):
    for x, _ in loader:
        model(x.to(device))


def bench_measure(device, quick, repeats):
    out = []
    for label, model, loader, classes in setups(device, quick):
        ta, tb = side_by_side(lambda: measure(model, loader, classes, device),
                              lambda: plain_inference(model, loader, device), device, repeats)
        out.append(report(f"SI measure vs inference [{label}]", ta, tb, "measure", "plain", "<= 1.03x"))
    return out


def bench_regularizer(device, quick, repeats):
    out = []
    for label, model, loader, classes in setups(device, quick):
        model = copy.deepcopy(model).train()
        x, y = next(iter(loader))
        x, y = x.to(device), y.to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        reg = SelectivityRegularizer(model, classes, ("layer1", "layer2", "layer3"))

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
            c.compare(_quiet(loader))

    ta, tb = side_by_side(lambda: cka.cka_matrix(model, loader, layers, device), theirs, device, repeats)
    return report(f"CKA vs torch-cka (float32) [{label}]", ta, tb, "ours", "torch-cka", "< 1x")


class _quiet(DataLoader):
    """The loader as torch-cka wants it (it reads ``.dataset``), unchanged otherwise."""

    def __init__(self, loader):
        super().__init__(loader.dataset, batch_size=loader.batch_size)


def bench_ablation(device, quick, repeats):
    out = []
    for label, model, loader, _ in setups(device, quick)[:1] if quick else setups(device, quick):
        g = torch.Generator().manual_seed(0)
        si = {b: torch.rand(n, generator=g) for b, n in _units(model).items()}
        kw = dict(ks=None, orders=("selective", "random"), draws=3, seed=0, device=device)
        naive = ablation_reference.ablation_curve_naive
        ta, tb = side_by_side(lambda: ablation.ablation_curve(model, loader, list(MODULES), si, **kw),
                              lambda: [naive(model, loader, m, si, **kw) for m in MODULES],
                              device, max(1, repeats // 3))
        out.append(report(f"ablation curves, 4 modules vs naive [{label}]", tb, ta, "naive", "fast", ">= 2x"))
    return out


def _units(model):
    from .models import bottlenecks

    return {b.name: b.channels for b in bottlenecks(model)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m classsel.bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--only", nargs="*", choices=["measure", "regularizer", "cka", "ablation"])
    args = p.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {repeats}")
    benches = {"measure": bench_measure, "regularizer": bench_regularizer, "cka": bench_cka,
               "ablation": bench_ablation}
    rows = []
    for name, fn in benches.items():
        if not args.only or name in args.only:
            rows += fn(device, args.quick, repeats)
    return rows


if __name__ == "__main__":
    main()
