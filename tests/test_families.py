"""The four quantities against independent references, for every architecture family:
SI against a per-image float64 loop, the fast ablation against one pass per level, CKA
against float64 HSIC with explicit matrices, mu_SI and its gradient against loops and
finite differences. Each family's unit is written out here again, not taken from classsel."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from classsel.ablation import ablation_curve
from classsel.ablation_reference import ablation_curve_naive
from classsel.architectures import layout
from classsel.cka import cka_matrix
from classsel.models import bottlenecks, build, describe
from classsel.regularizer import SelectivityRegularizer
from classsel.selectivity import measure

CLASSES = 5


def spatial(t: np.ndarray) -> np.ndarray:
    """[C, H, W] -> [C]: a convolutional unit's mean over positions."""
    return t.reshape(t.shape[0], -1).mean(axis=1)


def tokens_clamped(t: np.ndarray) -> np.ndarray:
    """[T, D] -> [D]: a transformer unit's mean over all tokens, negative means read as 0."""
    return np.maximum(t.mean(axis=0), 0.0)


#: arch -> (input shape, unit reduction of one image's unit tensor, builder options)
FAMILIES = {
    "resnet50_narrow": ((1, 16, 16), spatial, dict(width=4)),
    "vgg16_narrow": ((1, 16, 16), spatial, dict(width=4)),
    "vit_tiny": ((1, 14, 14), tokens_clamped, dict(image_size=14)),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def data(arch, n, seed):
    """Images whose class sets a bright square, plus noise."""
    shape = FAMILIES[arch][0]
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = 0.5 * torch.randn(n, *shape, generator=g)
    side = shape[-1] // 3
    for c in range(CLASSES):
        r, q = divmod(c, 3)
        x[y == c, :, r * side:(r + 1) * side, q * side:(q + 1) * side] += 2.0
    return x, y


def network(arch, seed=0):
    torch.manual_seed(seed)
    return build(arch, CLASSES, in_channels=1, **FAMILIES[arch][2])


def fitted(arch, x, y):
    """A network that predicts its training labels, untrained: BN statistics of ``x`` and a
    least-squares logits layer on the features that reach it (a ViT's head starts at zero)."""
    model = network(arch)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    logits = describe(model).logits_layer(model)
    seen = {}
    hook = logits.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0]))
    with torch.no_grad():
        model(x)
        model.eval()
        model(x)
        hook.remove()
        design = torch.cat([seen["x"].double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
        solution = torch.linalg.pinv(design) @ torch.nn.functional.one_hot(y, CLASSES).double()
        logits.weight.copy_(solution[:-1].T)
        logits.bias.copy_(solution[-1])
    return model


ARCHS = list(FAMILIES)


# --- SI -----------------------------------------------------------------------------------


def si_reference(model, arch, x, y):
    """Class means one image at a time, the unit reduction in float64 numpy, then eq. 1."""
    reduce = FAMILIES[arch][1]
    blocks = bottlenecks(model)
    sums = {b.name: np.zeros((CLASSES, b.channels)) for b in blocks}
    counts = np.zeros(CLASSES)
    model.eval()
    with torch.no_grad():
        for image, label in zip(x, y):
            outs = {}
            hooks = [b.block.register_forward_hook(lambda m, i, o, n=b.name: outs.__setitem__(n, o.clone()))
                     for b in blocks]
            model(image[None])
            for h in hooks:
                h.remove()
            for name, out in outs.items():
                sums[name][int(label)] += reduce(out[0].double().numpy())
            counts[int(label)] += 1
    si = {}
    for name, s in sums.items():
        means = s / counts[:, None]
        top = means.max(axis=0)
        rest = (means.sum(axis=0) - top) / (CLASSES - 1)
        si[name] = (top - rest) / (top + rest + 1e-6)
    return si


@pytest.mark.parametrize("arch", ARCHS)
def test_si_equals_a_per_image_float64_loop(arch):
    x, y = data(arch, 25, seed=1)
    model = fitted(arch, x, y)
    result = measure(model, DataLoader(TensorDataset(x, y), batch_size=10), CLASSES)
    reference = si_reference(model, arch, x, y)
    assert list(result.si) == [b.name for b in bottlenecks(model)] == list(reference)
    assert {b.module for b in result.blocks} == set(layout(arch).modules)
    for name, si in reference.items():
        # float32 networks: a batch of one takes other kernels than a batch of ten
        np.testing.assert_allclose(result.si[name].numpy(), si, rtol=1e-4, atol=1e-5, err_msg=name)


# --- ablation -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_ablation_equals_one_pass_per_level(arch):
    x, y = data(arch, 21, seed=2)  # batches of 10, 10 and 1
    model = fitted(arch, x, y)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    g = torch.Generator().manual_seed(3)
    si = {b.name: torch.rand(b.channels, generator=g) for b in bottlenecks(model)}
    modules = layout(arch).modules
    ks = {}
    for m in modules:
        units = bottlenecks(model, m)[0].channels
        ks[m] = [0, 1, units // 3, units - 1, units]
    fast = ablation_curve(model, loader, modules, si, ks=ks, draws=2, seed=5)
    naive = ablation_curve_naive(model, loader, modules, si, ks=ks, draws=2, seed=5)
    pd.testing.assert_frame_equal(fast, naive, check_exact=True)
    base = fast[fast.k == 0].accuracy.iloc[0]
    assert base == 1.0  # by construction, so that ablating can change predictions
    assert (fast[fast.k > 0].accuracy < base).any()


# --- CKA ----------------------------------------------------------------------------------


def hsic1_reference(K, L):
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones((n, 1))
    value = np.trace(K @ L) + (one.T @ K @ one) * (one.T @ L @ one) / ((n - 1) * (n - 2)) \
        - 2 / (n - 2) * (one.T @ K @ L @ one)
    return float(np.squeeze(value)) / (n * (n - 3))


def layer_outputs(model, arch, x):
    """The family's CKA layers written out by hand: each module's last block's output, the logits."""
    d = describe(model)
    if arch == "vit_tiny":
        layers = list(model.encoder.layers)
        last = {m: layers[int(bottlenecks(model, m)[-1].name.split(".")[1]) + 2 * i]
                for i, m in enumerate(d.layout.modules)}
    elif arch == "vgg16_narrow":
        relus = [m for m in model.features if isinstance(m, torch.nn.ReLU)]
        last = dict(zip(d.layout.modules, [relus[3], relus[6], relus[9], relus[12]]))
    else:
        last = {m: getattr(model, m)[-1] for m in d.layout.modules}
    last[d.layout.logits] = dict(model.named_modules())[d.layout.logits]
    outs = {}
    hooks = [mod.register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o.flatten(1).double().numpy()))
             for n, mod in last.items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [outs[n] for n in d.layout.cka_layers]


@pytest.mark.parametrize("arch", ARCHS)
def test_cka_equals_float64_hsic_with_explicit_matrices(arch):
    x, y = data(arch, 24, seed=4)
    x = x + torch.randn(24, 1, 1, 1, generator=torch.Generator().manual_seed(5))  # a signal every layer carries
    model = fitted(arch, x, y).eval()
    batches = x.split(8)
    names = layout(arch).cka_layers
    hsic = np.zeros((len(names), len(names)))
    for b in batches:
        grams = [f @ f.T for f in layer_outputs(model, arch, b)]
        for i, K in enumerate(grams):
            for j, L in enumerate(grams):
                hsic[i, j] += hsic1_reference(K, L)
    reference = hsic / np.sqrt(np.outer(hsic.diagonal(), hsic.diagonal()))
    got = cka_matrix(model, DataLoader(TensorDataset(x, y), batch_size=8))
    assert list(got.index) == list(names)
    np.testing.assert_allclose(got.to_numpy(), reference, atol=1e-5)


# --- mu_SI --------------------------------------------------------------------------------


def mu_si_reference(model, arch, x, y, modules):
    """Eq. 2 by loops: SI over the classes present, per unit, block, module, in float64."""
    reduce = FAMILIES[arch][1]
    blocks = bottlenecks(model, modules)
    outs = {}
    hooks = [b.block.register_forward_hook(lambda m, i, o, n=b.name: outs.__setitem__(n, o)) for b in blocks]
    model(x)
    for h in hooks:
        h.remove()
    present = sorted(set(y.tolist()))
    per_module = []
    for module in modules:
        per_block = []
        for b in (b for b in blocks if b.module == module):
            acts = np.stack([reduce(o) for o in outs[b.name].detach().double().numpy()])
            means = np.stack([acts[y.numpy() == c].mean(0) for c in present])
            top = means.max(0)
            rest = (means.sum(0) - top) / (len(present) - 1)
            per_block.append(((top - rest) / (top + rest + 1e-6)).mean())
        per_module.append(np.mean(per_block))
    return float(np.mean(per_module))


@pytest.mark.parametrize("arch", ARCHS)
def test_mu_si_and_its_gradient_against_loops_and_finite_differences(arch):
    x, y = data(arch, 12, seed=6)
    y = torch.arange(12) % 4  # one class absent
    model = network(arch, seed=1).double()
    x = x.double()
    reg = SelectivityRegularizer(model, CLASSES)
    assert reg.module_of and set(reg.module_of.values()) == set(layout(arch).regularized)
    model.train()
    with reg:
        model(x)
    assert reg.mu_si(y).item() == pytest.approx(mu_si_reference(model, arch, x, y, layout(arch).regularized),
                                                rel=1e-10)

    model.eval()
    second = bottlenecks(model, layout(arch).modules[1])[0]
    weight = next(m for m in describe(model).pieces(model, second.module)[0].modules()
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))).weight

    def f():
        with reg:
            model(x)
        return reg.mu_si(y)

    model.zero_grad()
    f().backward()
    analytic = weight.grad.flatten()
    idx = torch.randperm(weight.numel(), generator=torch.Generator().manual_seed(0))[:6]
    for i in idx:
        flat = weight.data.view(-1)
        orig = flat[i].item()
        with torch.no_grad():
            flat[i] = orig + 1e-6
            up = f().item()
            flat[i] = orig - 1e-6
            down = f().item()
            flat[i] = orig
        assert analytic[i].item() == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-8)
