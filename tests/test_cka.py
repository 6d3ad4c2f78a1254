"""Minibatch linear CKA against brute-force float64 references and the torch-cka package."""

import copy
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from classsel.cka import cka_matrix, gram, hsic1
from classsel.models import build, forward_hooks, named_layers

LAYERS = ("layer1", "layer2", "layer3", "layer4", "fc")


# --- independent references -------------------------------------------------------


def hsic1_reference(K: np.ndarray, L: np.ndarray) -> float:
    """Eq. 3 of Nguyen et al. (2020) with explicit matrices and ones vectors."""
    n = K.shape[0]
    K, L = K.astype(np.float64).copy(), L.astype(np.float64).copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones((n, 1))
    trace = np.trace(K @ L)
    middle = (one.T @ K @ one) @ (one.T @ L @ one) / ((n - 1) * (n - 2))
    last = 2 / (n - 2) * (one.T @ K @ L @ one)
    return float(np.squeeze(trace + middle - last) / (n * (n - 3)))


def features_float64(model, x, layers):
    """Outputs of ``layers`` for batch ``x``, flattened, as float64 numpy arrays."""
    feats = {}
    was_training = model.training
    model.eval()

    def keep(name, out):
        feats[name] = out.flatten(1).double().numpy()

    with torch.no_grad(), forward_hooks(named_layers(model, layers), keep):
        model(x)
    model.train(was_training)
    return [feats[k] for k in layers]


def cka_reference(model, batches, layers=LAYERS, model_b=None, layers_b=None) -> np.ndarray:
    """Minibatch CKA from raw (uncentred) float64 features, sums of eq. 3 over batches."""
    model_b = model if model_b is None else model_b
    layers_b = layers if layers_b is None else layers_b
    hsic = np.zeros((len(layers), len(layers_b)))
    self_a, self_b = np.zeros(len(layers)), np.zeros(len(layers_b))
    for x in batches:
        grams_a = [f @ f.T for f in features_float64(model, x, layers)]
        grams_b = [f @ f.T for f in features_float64(model_b, x, layers_b)]
        for i, K in enumerate(grams_a):
            self_a[i] += hsic1_reference(K, K)
            for j, L in enumerate(grams_b):
                hsic[i, j] += hsic1_reference(K, L)
        for j, L in enumerate(grams_b):
            self_b[j] += hsic1_reference(L, L)
    return hsic / np.sqrt(np.outer(self_a, self_b))


def images(n_batches, batch, shape, seed):
    """Noise images with a per-image brightness, a shared signal every layer carries.

    Pure noise through a randomly initialised net leaves layer1 and fc nearly
    independent, and the unbiased estimator then dips below 0 on a few images.
    """
    g = torch.Generator().manual_seed(seed)
    x = 0.5 * torch.randn(n_batches * batch, *shape, generator=g) + torch.randn(
        n_batches * batch, 1, 1, 1, generator=g
    )
    return list(x.split(batch))


def loader_of(batches, dtype=torch.float32):
    x = torch.cat(batches).to(dtype)
    labels = torch.zeros(len(x), dtype=torch.long)
    return DataLoader(TensorDataset(x, labels), batch_size=len(batches[0]))


@pytest.fixture(scope="module")
def narrow():
    torch.manual_seed(0)
    return build("resnet50_narrow", 10, in_channels=1)


@pytest.fixture(scope="module")
def narrow_batches():
    return images(3, 16, (1, 28, 28), seed=1)


@pytest.fixture(scope="module")
def narrow_cka(narrow, narrow_batches):
    return cka_matrix(narrow, loader_of(narrow_batches))


# --- hsic1 and gram ----------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 5, 17, 32])
def test_hsic1_matches_brute_force(n):
    rng = np.random.default_rng(n)
    X, Y = rng.normal(size=(n, 7)), rng.normal(size=(n, 3))
    Y[:, :2] += X[:, :2]
    for K, L in [(X @ X.T, Y @ Y.T), (X @ X.T, X @ X.T)]:
        got = hsic1(torch.from_numpy(K), torch.from_numpy(L))
        assert got.dtype == torch.float64
        assert float(got) == pytest.approx(hsic1_reference(K, L), rel=1e-12, abs=1e-12)
    # Any symmetric matrices, diagonals included (they must be ignored).
    A, B = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    A, B = A + A.T, B + B.T
    got = hsic1(torch.from_numpy(A), torch.from_numpy(B))
    assert float(got) == pytest.approx(hsic1_reference(A, B), rel=1e-12, abs=1e-12)


def test_hsic1_of_stacks_is_every_pair():
    # The form cka_matrix uses: [p, n, n] and [q, n, n] Grams give the [p, q] matrix.
    rng = np.random.default_rng(7)
    n = 9
    feats = [rng.normal(size=(n, d)) for d in (2, 5, 11)]
    feats[1][:, :2] += feats[0]
    grams = [f @ f.T for f in feats]
    A = torch.from_numpy(np.stack(grams))
    B = torch.from_numpy(np.stack(grams[1:]))
    got = hsic1(A, B)
    assert got.shape == (3, 2) and got.dtype == torch.float64
    expected = [[hsic1_reference(K, L) for L in grams[1:]] for K in grams]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_hsic1_is_invariant_to_feature_means():
    # Why gram() may centre: eq. 3 with linear kernels ignores a shift of any feature.
    rng = np.random.default_rng(0)
    for n in (4, 9, 32):
        X, Y = rng.normal(size=(n, 30)), rng.normal(size=(n, 5))
        Xs, Ys = X + 5 * rng.normal(size=30), Y - 3.0
        expected = hsic1_reference(X @ X.T, Y @ Y.T)
        assert hsic1_reference(Xs @ Xs.T, Ys @ Ys.T) == pytest.approx(expected, rel=1e-9)


def test_gram_keeps_float32_features_accurate():
    # ReLU-like features with a large mean: where uncentred float32 Grams go wrong.
    g = torch.Generator().manual_seed(0)
    X = torch.relu(torch.randn(32, 4000, generator=g)) + 10.0
    Y = torch.relu(0.2 * X[:, :500] + torch.randn(32, 500, generator=g)) + 10.0
    Xc, Yc = (f.double().numpy() for f in (X, Y))
    Xc, Yc = Xc - Xc.mean(0), Yc - Yc.mean(0)
    expected = hsic1_reference(Xc @ Xc.T, Yc @ Yc.T)
    assert float(hsic1(gram(X.double()), gram(Y.double()))) == pytest.approx(expected, rel=1e-12)
    assert float(hsic1(gram(X), gram(Y))) == pytest.approx(expected, rel=1e-5)
    # The plain float32 Gram (what torch-cka does) loses the result to cancellation.
    naive = float(hsic1((X @ X.T).double(), (Y @ Y.T).double()))
    assert abs(naive - expected) > 1e-3 * abs(expected)
    assert gram(X).shape == (32, 32) and gram(X).dtype == torch.float64


def test_gram_flattens_feature_maps():
    x = torch.randn(6, 3, 4, 5, dtype=torch.float64)
    flat = x.flatten(1) - x.flatten(1).mean(0)
    torch.testing.assert_close(gram(x), flat @ flat.T)


# --- cka_matrix against the float64 reference --------------------------------------


def test_cka_matrix_matches_float64_reference(narrow, narrow_batches, narrow_cka):
    expected = cka_reference(narrow, narrow_batches)
    got = narrow_cka
    assert list(got.index) == list(LAYERS) and list(got.columns) == list(LAYERS)
    # float32 Grams: the features themselves carry ~1e-7 relative rounding.
    np.testing.assert_allclose(got.values, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got.values, got.values.T)
    np.testing.assert_array_equal(np.diag(got.values), 1.0)


def test_cka_matrix_float64_model_matches_reference_tightly(narrow, narrow_batches):
    model = copy.deepcopy(narrow).double()
    batches = [x.double() for x in narrow_batches[:2]]
    got = cka_matrix(model, loader_of(batches, torch.float64))
    np.testing.assert_allclose(got.values, cka_reference(model, batches), rtol=0, atol=1e-9)


def torch_cka_matrix(model, batches, dtype=torch.float32) -> np.ndarray:
    """The torch-cka package's matrix; its float64 mode needs the default dtype set."""
    torch_cka = pytest.importorskip("torch_cka")
    default = torch.get_default_dtype()
    try:
        # It makes its ones vectors and HSIC accumulators in the default dtype.
        torch.set_default_dtype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its warnings about names and loaders
            model = copy.deepcopy(model).to(dtype)  # copies: it never removes its hooks
            cka = torch_cka.CKA(model, copy.deepcopy(model), "a", "b", list(LAYERS), list(LAYERS))
            loader = loader_of(batches, dtype)
            cka.compare(loader, loader)
        return cka.hsic_matrix.numpy()
    finally:
        torch.set_default_dtype(default)


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    return build("resnet50", 10)


def test_cka_matrix_matches_torch_cka_in_float64():
    torch.manual_seed(2)
    model = build("resnet18", 10)
    batches = images(3, 8, (3, 32, 32), seed=3)
    theirs = torch_cka_matrix(model, batches, torch.float64)
    assert theirs.dtype == np.float64
    # torch-cka divides every HSIC by the number of batches, which cancels in the ratio.
    model64 = copy.deepcopy(model).double()
    ours64 = cka_matrix(model64, loader_of(batches, torch.float64)).values
    np.testing.assert_allclose(ours64, theirs, rtol=0, atol=1e-9)
    ours32 = cka_matrix(model, loader_of(batches)).values
    np.testing.assert_allclose(ours32, theirs, rtol=0, atol=1e-4)


def test_resnet50_matrix_is_a_valid_cka_matrix(resnet50):
    batches = images(2, 8, (3, 64, 64), seed=4)
    got = cka_matrix(resnet50, loader_of(batches)).values
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(np.diag(got), 1.0)
    assert (got >= 0).all() and (got <= 1 + 1e-6).all()
    np.testing.assert_allclose(got, cka_reference(resnet50, batches), rtol=0, atol=1e-5)


def test_float32_torch_cka_breaks_where_cka_matrix_does_not(resnet50):
    # Pure noise images: near-independent layers, where the unbiased estimator's terms
    # cancel most. torch-cka in float32 (as the paper ran it) then returns NaN (it
    # asserts) or errors of ~0.4 with entries above 1; seen on 10 of 10 seeds. Our
    # entries may dip below 0 here, as the unbiased estimator may.
    noise = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(100))
    batches = list(noise.split(8))
    expected = cka_reference(resnet50, batches)
    got = cka_matrix(resnet50, loader_of(batches)).values
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert (got <= 1 + 1e-6).all()
    try:
        theirs = torch_cka_matrix(resnet50, batches)
    except AssertionError as e:
        assert "NAN" in str(e)
        return
    assert np.abs(theirs - expected).max() > 0.05


# --- two models, loaders, modes ----------------------------------------------------


def test_model_b_itself_and_a_copy_give_the_single_model_matrix(narrow, narrow_batches, narrow_cka):
    single = narrow_cka
    same = cka_matrix(narrow, loader_of(narrow_batches), model_b=narrow)
    np.testing.assert_array_equal(same.values, single.values)
    # A copy takes the two-model path: separate forward passes and self terms.
    twin = cka_matrix(narrow, loader_of(narrow_batches), model_b=copy.deepcopy(narrow))
    np.testing.assert_allclose(twin.values, single.values, rtol=0, atol=1e-12)


def test_two_different_models_with_different_layers(narrow, narrow_batches):
    torch.manual_seed(5)
    other = build("resnet50_narrow", 10, in_channels=1)
    rows, cols = ("layer1", "fc"), ("layer2", "layer3", "layer4")
    batches = narrow_batches[:2]
    got = cka_matrix(narrow, loader_of(batches), layers=rows, model_b=other, layers_b=cols)
    assert got.shape == (2, 3)
    assert list(got.index) == list(rows) and list(got.columns) == list(cols)
    expected = cka_reference(narrow, batches, rows, model_b=other, layers_b=cols)
    np.testing.assert_allclose(got.values, expected, rtol=0, atol=1e-5)


def test_layers_b_on_one_model_is_a_block_of_the_full_matrix(narrow, narrow_batches, narrow_cka):
    full = narrow_cka
    rows, cols = ["fc", "layer1"], ["layer3"]
    block = cka_matrix(narrow, loader_of(narrow_batches), layers=rows, layers_b=cols)
    np.testing.assert_allclose(block.values, full.loc[rows, cols].values, rtol=0, atol=1e-12)


def test_loader_of_bare_images_and_modes_restored(narrow, narrow_batches, narrow_cka):
    model = copy.deepcopy(narrow).train()
    model.layer2.eval()  # a mixed state must come back as it was
    running_mean = model.bn1.running_mean.clone()
    got = cka_matrix(model, narrow_batches, progress=True)  # a list of images is a loader too
    np.testing.assert_allclose(got.values, narrow_cka.values, rtol=0, atol=1e-12)
    assert model.training and model.layer1.training and not model.layer2.training
    assert not model.layer2[0].bn1.training
    torch.testing.assert_close(model.bn1.running_mean, running_mean, rtol=0, atol=0)


# --- bad inputs --------------------------------------------------------------------


def test_unknown_layer_names_raise(narrow, narrow_batches):
    with pytest.raises(ValueError, match="layer9"):
        cka_matrix(narrow, narrow_batches, layers=("layer1", "layer9"))
    with pytest.raises(ValueError, match="bogus"):
        cka_matrix(narrow, narrow_batches, model_b=copy.deepcopy(narrow), layers_b=("bogus",))


def test_small_batches_and_empty_loaders_raise(narrow):
    with pytest.raises(ValueError, match="at least 4.*3|3.*at least 4"):
        cka_matrix(narrow, [torch.randn(3, 1, 28, 28)])
    with pytest.raises(ValueError, match="no batches"):
        cka_matrix(narrow, [])
    with pytest.raises(ValueError, match="n=3"):
        hsic1(torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        hsic1(torch.eye(4, dtype=torch.float64), torch.eye(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        hsic1(torch.eye(4, dtype=torch.float64)[None], torch.eye(5, dtype=torch.float64)[None])


# --- layers that leave CKA undefined ------------------------------------------------


def test_constant_or_non_finite_layers_are_named(narrow, narrow_batches):
    # Once a silent NaN in the matrix. A zero fc gives every image exactly the same logits: its bias.
    dead = copy.deepcopy(narrow)
    torch.nn.init.zeros_(dead.fc.weight)
    with pytest.raises(ValueError, match=r"layer 'fc' gives the same features for every image"):
        cka_matrix(dead, narrow_batches)
    with pytest.raises(ValueError, match=r"model_b's layer 'fc' gives the same features"):
        cka_matrix(narrow, narrow_batches, model_b=dead)
    broken = copy.deepcopy(narrow)
    with torch.no_grad():
        broken.layer3[0].conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'layer3' gives features that are not finite"):
        cka_matrix(broken, narrow_batches)
    with pytest.raises(ValueError, match=r"model_b's layer 'layer4' gives features that are not finite"):
        cka_matrix(narrow, narrow_batches, layers=("layer1",), model_b=broken, layers_b=("layer4", "fc"))
    overflow = copy.deepcopy(narrow)
    with torch.no_grad():
        overflow.fc.bias[0] = float("inf")
    with pytest.raises(ValueError, match=r"layer 'fc' gives features that are not finite"):
        cka_matrix(overflow, narrow_batches, layers=("layer2", "fc"))


# --- CKA measured alongside another pass (a training run's evaluation) -------------------


def labelled(batches):
    """The batches in a loader with every class in them (the evaluation measures SI too)."""
    x = torch.cat(batches)
    return DataLoader(TensorDataset(x, torch.arange(len(x)) % 10), batch_size=len(batches[0]))


def test_cka_alongside_an_evaluation_in_pieces_matches_the_reference(narrow, narrow_batches, narrow_cka):
    """The evaluation runs each batch of 16 in pieces of 5 (5, 5, 6); the batch's HSIC terms come from
    its pieces put together, as :func:`cka_matrix` takes whole batches."""
    from classsel.cka import Alongside
    from classsel.selectivity import measure

    along = Alongside(narrow, LAYERS)
    with along.hooks():
        measure(narrow, labelled(narrow_batches), 10, chunk=5, after_batch=along.end_batch)
    got = along.matrix()
    np.testing.assert_allclose(got.values, cka_reference(narrow, narrow_batches), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.values, narrow_cka.values, rtol=0, atol=1e-6)
    assert list(got.index) == list(LAYERS) and list(got.columns) == list(LAYERS)
    # a batch's pieces do not carry over into the next batch: one batch alone gives its own matrix
    one = Alongside(narrow, ("layer2", "fc"))
    with one.hooks():
        measure(narrow, labelled(narrow_batches[:1]), 10, chunk=5, after_batch=one.end_batch)
    np.testing.assert_allclose(one.matrix().values, cka_reference(narrow, narrow_batches[:1], ("layer2", "fc")),
                               rtol=0, atol=1e-5)


def test_cka_alongside_names_what_leaves_it_undefined(narrow, narrow_batches):
    from classsel.cka import Alongside

    with pytest.raises(ValueError, match="no batch ended"):
        Alongside(narrow, LAYERS).matrix()
    with pytest.raises(ValueError, match="unknown|layer"):
        Alongside(narrow, ("layer9",))
    small = Alongside(narrow, LAYERS)
    with small.hooks(), torch.no_grad():
        narrow.eval()(narrow_batches[0][:3])
    with pytest.raises(ValueError, match="n=3"):
        small.end_batch()
    dead = copy.deepcopy(narrow)
    torch.nn.init.zeros_(dead.fc.weight)
    along = Alongside(dead, ("layer1", "fc"))
    with along.hooks(), torch.no_grad():
        dead.eval()(narrow_batches[0])
    along.end_batch()
    with pytest.raises(ValueError, match=r"layer 'fc' gives the same features for every image"):
        along.matrix()
    with pytest.raises(ValueError, match=r"gave no output"):
        along.end_batch()
