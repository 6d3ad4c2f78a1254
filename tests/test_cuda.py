"""CUDA: bf16/channels_last training steps, measurements on the GPU against the CPU, kill -9 and resume.

The CUDA cases carry the ``cuda`` marker and are skipped where ``torch.cuda.is_available()``
is False. Where the same logic also runs on the CPU (bf16 autocast, channels_last, the
unstacked ablation path, a bf16 run killed and resumed), the test is parametrised over
devices, so the CPU case runs everywhere and checks the test code itself.

Tolerances, stated once (see each constant): bf16 keeps 8 significant bits, so one
training step in bf16 is compared to a float64 reference by relative norms; fp32 paths
run with TF32 off and are compared tightly; TF32 (PyTorch's default for cuDNN
convolutions) gets its own looser bound.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import time
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from classsel.layout import RunFiles
from classsel.ablation import ablation_curve
from classsel.ablation_reference import ablation_curve_naive
from classsel.cka import cka_matrix
from classsel.models import MODULES, bottlenecks, build
from classsel.regularizer import SelectivityRegularizer
from classsel.selectivity import measure
from conftest import wait_until

NO_CUDA = "needs a CUDA device: torch.cuda.is_available() is False on this machine"
CUDA_MARKS = (pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA))
CLASSES = 10

# One training step against float64 on the CPU, BatchNorm on fixed statistics. Measured on
# CPU bf16 (10 steps into training on structured images): loss and mu_SI within ~0.2%,
# gradients within ~1.2-1.9% in relative L2 norm; fp32 within ~4e-7. With batch
# statistics, BatchNorm divides by the small spread of some channels and amplifies any
# rounding: there fp32 itself differs from float64 by up to 2% in the gradient, so a
# train-mode step is compared by its loss and mu_SI only (measured within ~1.3%).
BF16_VALUE_RTOL = 0.02
BF16_GRAD_RTOL = 0.06
FP32_VALUE_RTOL = 1e-5
FP32_GRAD_RTOL = 1e-3  # measured ~1e-4
TRAIN_MODE_VALUE_RTOL = 0.05
# The gradient of mu_SI alone is another matter under bf16: SI's gradient goes through
# each unit's largest class mean, and where two class means lie within bf16's rounding
# the chosen class flips. Measured on CPU bf16: 45% relative L2 error against float64,
# cosine 0.89 (fp32: 9e-5). Bounded here by its direction: cosine >= MU_GRAD_BF16_COSINE.
MU_GRAD_BF16_COSINE = 0.75
# measure / cka_matrix in fp32 with TF32 off against the CPU: float32 sums in another order.
FP32_ATOL = 1e-4
# TF32 convolutions (10-bit mantissa) against the CPU: per-unit SI differences of ~1e-3.
TF32_SI_ATOL = 1e-2


def on(device: str):
    """A pytest parameter for ``device``, marked and skipped without CUDA where it is a GPU."""
    return pytest.param(device, marks=CUDA_MARKS if device.startswith("cuda") else (), id=device)


DEVICES = [on("cpu"), on("cuda")]


@pytest.fixture
def fp32_exact():
    """TF32 off and deterministic cuDNN for the test, restored after it."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def relative_error(got, ref) -> float:
    """``||got - ref|| / ||ref||`` in float64 on the CPU, for tensors or lists of tensors."""
    if isinstance(got, (list, tuple)):
        got, ref = (torch.cat([t.detach().double().cpu().flatten() for t in ts]) for ts in (got, ref))
    got, ref = torch.as_tensor(got, dtype=torch.float64).cpu(), torch.as_tensor(ref, dtype=torch.float64).cpu()
    return float((got - ref).norm() / ref.norm())


def test_relative_error_helper():
    assert relative_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0])) == 0
    assert relative_error([torch.tensor([3.0]), torch.tensor([4.0])], [torch.zeros(1), torch.tensor([5.0])]) \
        == pytest.approx(np.hypot(3, 1) / 5)
    assert relative_error(1.01, 1.0) == pytest.approx(0.01)
    assert cosine([torch.tensor([1.0, 0.0])], [torch.tensor([2.0, 0.0])]) == pytest.approx(1.0)
    assert cosine([torch.tensor([1.0]), torch.tensor([0.0])], [torch.tensor([0.0]), torch.tensor([3.0])]) == 0


def narrow_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build("resnet50_narrow", CLASSES, width=8, in_channels=3)


def images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class sets the position of a bright patch, plus noise; labels cycle the classes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % CLASSES
    x = 0.5 * torch.randn(n, 3, size, size, generator=g)
    side = size // 4
    for c in range(CLASSES):
        r, q = divmod(c, 4)
        x[labels == c, :, r * side:(r + 1) * side, q * side:(q + 1) * side] += 2.0
    return x, labels


def trained(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> torch.nn.Module:
    """A few SGD steps on the CPU, so BatchNorm statistics and weights are away from initialisation."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for i in range(steps):
        part = slice(batch * i % len(y), batch * i % len(y) + batch)
        loss = F.cross_entropy(model(x[part]), y[part])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def placed(model: torch.nn.Module, device: str, channels_last: bool, dtype=torch.float32) -> torch.nn.Module:
    """A copy of ``model`` on ``device`` in ``dtype`` and the chosen memory format."""
    m = copy.deepcopy(model).to(device=device, dtype=dtype)
    return m.to(memory_format=torch.channels_last) if channels_last else m


# --------------------------------------------------------------------------- training steps


def step_gradients(model, x, y, alpha: float, amp: bool, channels_last: bool, batch_stats: bool,
                   mu_only: bool = False):
    """One training step's objective as train.py computes it: (loss, mu_SI, parameter gradients).

    ``alpha == 0`` runs without the regulariser; ``mu_only`` differentiates mu_SI alone;
    ``batch_stats=False`` keeps BatchNorm on its running statistics.
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    reg = SelectivityRegularizer(model, CLASSES, ("layer1", "layer2", "layer3"))
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train(batch_stats)
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp), (reg if alpha else nullcontext()):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        term = reg.mu_si(y) if alpha else None
    objective = term if mu_only else (loss - alpha * term if alpha else loss)
    objective.backward()
    grads = [p.grad.detach().double().cpu() if p.grad is not None else torch.zeros(p.shape, dtype=torch.float64)
             for p in model.parameters()]
    return float(loss.detach()), (float(term.detach()) if alpha else None), grads


@pytest.fixture(scope="module")
def stepping():
    """A narrow ResNet-50 10 steps into training, and one batch of 40 images."""
    x, y = images(200, 32, seed=1)
    return trained(narrow_model(), x, y, steps=10, batch=40), x[:40], y[:40]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("alpha", [0.0, -20.0], ids=["plain", "regularised"])
def test_training_step_matches_float64(stepping, device, precision, alpha, fp32_exact):
    """Loss, mu_SI and gradients of a channels_last step on ``device`` against float64 NCHW on the CPU."""
    model, x, y = stepping
    ref_loss, ref_mu, ref_grads = step_gradients(placed(model, "cpu", False, torch.float64), x.double(), y, alpha,
                                                 amp=False, channels_last=False, batch_stats=False)
    amp = precision == "bf16"
    loss, mu, grads = step_gradients(placed(model, device, True), x, y, alpha, amp=amp, channels_last=True,
                                     batch_stats=False)
    value_rtol, grad_rtol = (BF16_VALUE_RTOL, BF16_GRAD_RTOL) if amp else (FP32_VALUE_RTOL, FP32_GRAD_RTOL)
    assert loss == pytest.approx(ref_loss, rel=value_rtol)
    if alpha:
        assert mu == pytest.approx(ref_mu, rel=value_rtol)
    assert relative_error(grads, ref_grads) <= grad_rtol


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    a, b = (torch.cat([t.double().cpu().flatten() for t in ts]) for ts in (a, b))
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_mu_si_gradient_matches_float64(stepping, device, precision, fp32_exact):
    """d mu_SI / d weights alone, channels_last, against float64 NCHW (tolerances above)."""
    model, x, y = stepping
    _, ref_mu, ref_grads = step_gradients(placed(model, "cpu", False, torch.float64), x.double(), y, 1.0,
                                          amp=False, channels_last=False, batch_stats=False, mu_only=True)
    amp = precision == "bf16"
    _, mu, grads = step_gradients(placed(model, device, True), x, y, 1.0, amp=amp, channels_last=True,
                                  batch_stats=False, mu_only=True)
    assert mu == pytest.approx(ref_mu, rel=BF16_VALUE_RTOL if amp else FP32_VALUE_RTOL)
    # mu_SI of layer1-3 does not depend on layer4 or fc: exactly zero gradient there
    used = [i for i, g in enumerate(ref_grads) if g.abs().sum() > 0]
    unused = [i for i in range(len(ref_grads)) if i not in used]
    assert used and unused
    assert all(grads[i].abs().sum() == 0 for i in unused)
    got, ref = [grads[i] for i in used], [ref_grads[i] for i in used]
    if amp:
        assert cosine(got, ref) >= MU_GRAD_BF16_COSINE
    else:
        assert relative_error(got, ref) <= FP32_GRAD_RTOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("alpha", [0.0, -20.0], ids=["plain", "regularised"])
def test_train_mode_step_values_bf16(stepping, device, alpha, fp32_exact):
    """With BatchNorm on batch statistics (a real training step): loss and mu_SI against float64."""
    model, x, y = stepping
    ref_loss, ref_mu, _ = step_gradients(placed(model, "cpu", False, torch.float64), x.double(), y, alpha,
                                         amp=False, channels_last=False, batch_stats=True)
    loss, mu, grads = step_gradients(placed(model, device, True), x, y, alpha, amp=True, channels_last=True,
                                     batch_stats=True)
    assert loss == pytest.approx(ref_loss, rel=TRAIN_MODE_VALUE_RTOL)
    if alpha:
        assert mu == pytest.approx(ref_mu, rel=TRAIN_MODE_VALUE_RTOL)
    assert all(torch.isfinite(g).all() for g in grads)


# --------------------------------------------------------------------------- measurements on the GPU


@pytest.fixture(scope="module")
def evaluated():
    """A narrow ResNet-50 a few steps into training, in eval mode, and a loader of 200 images."""
    x, y = images(200, 32, seed=3)
    return trained(narrow_model(2), x, y, steps=4, batch=50), DataLoader(TensorDataset(x, y), batch_size=50)


CASES = [on("cpu"), on("cuda")]  # device; channels_last on the CPU is a real second path there
LAYOUTS = [("cpu", True), ("cuda", False), ("cuda", True)]
LAYOUT_PARAMS = [pytest.param(d, cl, marks=CUDA_MARKS if d == "cuda" else (), id=f"{d}-{'cl' if cl else 'nchw'}")
                 for d, cl in LAYOUTS]


@pytest.mark.parametrize("device,channels_last", LAYOUT_PARAMS)
def test_measure_matches_cpu(evaluated, device, channels_last, fp32_exact):
    model, loader = evaluated
    ref = measure(model, loader, CLASSES, "cpu")
    got = measure(placed(model, device, channels_last), loader, CLASSES, device)
    for b in ref.blocks:
        np.testing.assert_allclose(got.class_means[b.name].cpu().numpy(), ref.class_means[b.name].numpy(),
                                   rtol=FP32_ATOL, atol=1e-6, err_msg=b.name)
        np.testing.assert_allclose(got.si[b.name].cpu().numpy(), ref.si[b.name].numpy(), atol=FP32_ATOL)
    assert got.samples == ref.samples == 200
    # a near-tie of two logits may flip its argmax; allow one such sample
    assert (got.prediction_counts - ref.prediction_counts).abs().sum() <= 2
    assert abs(got.correct1 - ref.correct1) <= 1


@pytest.mark.parametrize("device", [on("cuda")])
def test_measure_under_tf32_matches_cpu(evaluated, device):
    """PyTorch's default on CUDA (TF32 convolutions): SI per unit within TF32_SI_ATOL of the CPU."""
    model, loader = evaluated
    ref = measure(model, loader, CLASSES, "cpu")
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        got = measure(placed(model, device, True), loader, CLASSES, device)
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    for b in ref.blocks:
        np.testing.assert_allclose(got.si[b.name].cpu().numpy(), ref.si[b.name].numpy(), atol=TF32_SI_ATOL)


@pytest.mark.parametrize("device,channels_last", LAYOUT_PARAMS)
def test_cka_matrix_matches_cpu(evaluated, device, channels_last, fp32_exact):
    model, loader = evaluated
    layers = [*MODULES, "fc"]
    ref = cka_matrix(model, loader, layers, "cpu")
    got = cka_matrix(placed(model, device, channels_last), loader, layers, device)
    assert list(got.index) == list(ref.index) and list(got.columns) == list(ref.columns)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=FP32_ATOL)


@pytest.mark.parametrize("device", CASES)
def test_ablation_fast_path_matches_naive(evaluated, device, fp32_exact):
    """The fast path (one level per batch, as on a GPU) equals the naive re-run on the same device,
    count for count, and the CPU's curves up to argmax near-ties."""
    model, loader = evaluated
    if device == "cpu":  # the naive re-run is minutes on a slow CPU: one batch there (the GPU gets all four)
        x, y = loader.dataset.tensors
        loader = DataLoader(TensorDataset(x[:50], y[:50]), batch_size=50)
    g = torch.Generator().manual_seed(4)
    si = {b.name: torch.rand(b.channels, generator=g) for b in bottlenecks(model)}
    kw = dict(ks=None, orders=("selective", "random"), draws=2, seed=0, device=device)
    m = placed(model, device, False)
    fast = ablation_curve(m, loader, list(MODULES), si, stack=1, **kw)
    naive = pd.concat([ablation_curve_naive(m, loader, name, si, **kw) for name in MODULES], ignore_index=True)
    pd.testing.assert_frame_equal(fast, naive)
    cpu = ablation_curve(model, loader, list(MODULES), si, **{**kw, "device": "cpu"})
    assert (fast["correct"] - cpu["correct"]).abs().max() <= 1
    pd.testing.assert_frame_equal(fast.drop(columns=["correct", "accuracy", "normalized"]),
                                  cpu.drop(columns=["correct", "accuracy", "normalized"]))


# --------------------------------------------------------------------------- kill -9 and resume

# The CLI with deterministic kernels: cuDNN's fastest backward kernels accumulate with
# atomics, so two uninterrupted CUDA runs differ in their last bits; with deterministic
# algorithms a resumed run must equal an uninterrupted one exactly, as on the CPU.
DETERMINISTIC_CLI = textwrap.dedent(
    """
    import sys, torch
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    from classsel.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)
TIMING = ["train_seconds", "eval_seconds"]


def run_args(device: str, out) -> list[str]:
    # bf16 autocast and channels_last forced, so the CPU case exercises the CUDA defaults
    return [sys.executable, "-c", DETERMINISTIC_CLI, "train", "--preset", "smoke", "--epochs", "4",
            "--device", device, "--amp", "bf16", "--channels-last", "on", "--no-progress", "--out", str(out)]


def kill_when(command: list[str], ready, delay: float) -> bool:
    """Start ``command``, wait until ``ready()`` (or the process ends), ``delay`` seconds more, SIGKILL it.

    Returns whether the process was still running when killed.
    """
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env())
    wait_until(ready, proc)
    time.sleep(delay)
    alive = proc.poll() is None
    proc.kill()
    proc.wait()
    return alive


def run_env() -> dict:
    return {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


@pytest.mark.parametrize("device", DEVICES)
def test_killed_and_resumed_equals_uninterrupted(device, tmp_path):
    """bf16/channels_last on ``device``: SIGKILL mid-run, resume, SIGKILL again, resume to the end."""
    ref, out = tmp_path / "ref", tmp_path / "run"
    done = subprocess.run(run_args(device, ref), capture_output=True, text=True, env=run_env())
    assert done.returncode == 0, done.stderr[-3000:]

    # inside the second epoch, or inside a write: killed within 0.05 s of the third checkpoint, with
    # 30 steps and 3 evaluation points left, so that even a fast machine cannot finish first
    assert kill_when(run_args(device, out), lambda: len(RunFiles(out).checkpoints()) >= 3, 0.05)
    assert not (out / "DONE").exists(), "the run finished before it could be killed"
    kill_when([*run_args(device, out), "--resume"], lambda: True, 1.0)  # start-up or the first resumed steps
    done = subprocess.run([*run_args(device, out), "--resume"], capture_output=True, text=True, env=run_env())
    assert done.returncode == 0, done.stderr[-3000:]
    read = lambda folder: pd.read_csv(folder / "metrics.csv", float_precision="round_trip").drop(columns=TIMING)  # noqa: E731
    pd.testing.assert_frame_equal(read(out), read(ref), check_exact=True)
    steps = read(ref)["step"]
    assert list(steps) == [0, 2, 10, 20, 30, 40]
    for step in steps:  # and every unit's SI
        name = f"si/step{step:08d}.csv.gz"
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(ref / name), check_exact=True)
