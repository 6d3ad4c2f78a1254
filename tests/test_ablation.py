"""Ablation: zeroing units, unit orders, curves (fast vs one pass per level), AUC."""

from __future__ import annotations

import copy
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from classsel.ablation import (
    ablate,
    ablation_curve,
    auc,
    default_ks,
    plan,
    unit_order,
)
from classsel.ablation_reference import ablation_curve_naive
from classsel.models import MODULES, bottlenecks, build, describe


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models on a shared 2-core machine: one thread avoids OpenMP oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def structured_data(n, classes, shape, seed):
    """Images whose class sets the position of a bright patch, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    x = 0.5 * torch.randn(n, *shape, generator=g)
    side = shape[-1] // 4
    for c in range(classes):
        r, q = divmod(c % 16, 4)
        x[labels == c, :, r * side : (r + 1) * side, q * side : (q + 1) * side] += 2.0
    return x, labels


def constructed(model, x, y):
    """The model with its BN statistics and its head set from ``(x, y)``, untrained.

    No optimiser step: a trained network's predictions follow one machine's rounding, and
    a few steps may leave it predicting two classes on another CPU. Here BN running
    statistics are the exact statistics of ``x``, and ``fc`` is the minimum-norm float64
    solution of ``logits = onehot(y)`` on the features of ``x`` (features of 61 or 32
    images in 256 or 512 dimensions have full rank, condition numbers ~20): the network
    predicts every label of ``x``, each with a logit margin of 1.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one pass of one batch sets the exact statistics
    model.train()
    with torch.no_grad():
        model(x)
        for bn in bns:
            bn.momentum = 0.1
        model.eval()
        h = describe(model).stem(model, x)
        for name in MODULES:
            h = getattr(model, name)(h)
        features = torch.flatten(model.avgpool(h), 1).double()
        design = torch.cat([features, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
        solution = torch.linalg.pinv(design) @ torch.nn.functional.one_hot(y, model.fc.out_features).double()
        model.fc.weight.copy_(solution[:-1].T)
        model.fc.bias.copy_(solution[-1])
        assert torch.equal(model(x).argmax(1), y)  # by construction: margins of 1, float32 errors ~1e-6
    return model


def random_si(model, seed):
    g = torch.Generator().manual_seed(seed)
    return {b.name: torch.rand(b.channels, generator=g) * 2 - 1 for b in bottlenecks(model)}


@pytest.fixture(scope="module")
def narrow():
    torch.manual_seed(0)
    model = build("resnet50_narrow", 10, width=8, in_channels=1)
    x, y = structured_data(61, 10, (1, 16, 16), seed=1)
    constructed(model, x, y)
    # 61 = 3 * 20 + 1: the last batch holds one image.
    return model, DataLoader(TensorDataset(x, y), batch_size=20), random_si(model, 2)


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    model = build("resnet18", 10)
    x, y = structured_data(32, 10, (3, 24, 24), seed=3)
    constructed(model, x, y)
    return model, DataLoader(TensorDataset(x, y), batch_size=16), random_si(model, 4)


def predictions(model, loader):
    with torch.no_grad():
        return torch.cat([model(x).argmax(1) for x, _ in loader])


# --- ablate -----------------------------------------------------------------------------


def capture(model, names):
    """Record the output of each named block with our own hooks."""
    modules = dict(model.named_modules())
    seen = {}
    handles = [
        modules[n].register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out.detach().clone()))
        for n in names
    ]
    return seen, handles


def test_ablate_zeroes_exactly_the_chosen_units(narrow):
    model, loader, _ = narrow
    x = next(iter(loader))[0]
    names = ["layer2.1", "layer2.2", "layer3.0"]
    clean, handles = capture(model, names)
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()

    # Zero channels that are active in the clean pass, so zeroing them shows.
    active = clean["layer2.1"].sum(dim=(0, 2, 3)).nonzero().flatten()[:3].tolist()
    live = int(clean["layer3.0"].sum(dim=(0, 2, 3)).argmax())
    units = {"layer2.1": active, "layer3.0": torch.tensor([live])}
    with ablate(model, units):
        # Registered after ablate's hooks, so they see the output that goes on.
        ablated, handles = capture(model, names)
        with torch.no_grad():
            ablated_logits = model(x)
        for h in handles:
            h.remove()

    out = ablated["layer2.1"]
    assert len(active) == 3
    assert torch.equal(out[:, active], torch.zeros_like(out[:, active]))
    keep = [c for c in range(out.shape[1]) if c not in active]
    assert torch.equal(out[:, keep], clean["layer2.1"][:, keep])  # first ablated block: rest unchanged
    assert not torch.equal(ablated["layer2.2"], clean["layer2.2"])  # the zeros reach the next block
    assert (ablated["layer3.0"][:, live] == 0).all()
    others = [c for c in range(ablated["layer3.0"].shape[1]) if c != live]
    assert (ablated["layer3.0"][:, others] != 0).any()
    assert not torch.equal(ablated_logits, logits)

    # Outside the context the model is as before, without hooks.
    with torch.no_grad():
        assert torch.equal(model(x), logits)
    assert all(not b.block._forward_hooks for b in bottlenecks(model))


def test_ablate_removes_hooks_on_error_and_keeps_autograd(narrow):
    model, loader, _ = narrow
    x, y = next(iter(loader))
    with pytest.raises(RuntimeError, match="boom"):
        with ablate(model, {"layer1.0": [0]}):
            raise RuntimeError("boom")
    assert all(not b.block._forward_hooks for b in bottlenecks(model))

    # The hook must not modify the output in place in a way autograd rejects. A copy:
    # a train-mode pass would move the shared model's BN statistics.
    model = copy.deepcopy(model).train()
    with ablate(model, {"layer1.0": [0, 1], "layer4.2": [3]}):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
    assert torch.isfinite(loss)
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0


# --- unit order ---------------------------------------------------------------------


def test_selective_order_is_si_descending():
    si = {"a": torch.tensor([0.3, 0.9, 0.3, -0.1, 0.9, 0.5]), "b": torch.rand(50, generator=torch.Generator().manual_seed(0))}
    order = unit_order(si, "selective")
    for name, values in si.items():
        brute = sorted(range(len(values)), key=lambda i: (-float(values[i]), i))
        assert order[name].tolist() == brute
    assert order["a"].tolist() == [1, 4, 5, 0, 2, 3]


def test_random_order_is_a_seeded_permutation():
    si = {"a": torch.zeros(20), "b": torch.zeros(7)}
    first = unit_order(si, "random", torch.Generator().manual_seed(5))
    again = unit_order(si, "random", torch.Generator().manual_seed(5))
    other = unit_order(si, "random", torch.Generator().manual_seed(6))
    for name, values in si.items():
        assert sorted(first[name].tolist()) == list(range(len(values)))
        assert torch.equal(first[name], again[name])
    assert not torch.equal(first["a"], other["a"])


def test_plan_ablates_top_si_units_and_draws_differ(narrow):
    model, _, si = narrow
    p = plan(model, "layer2", si, ks=torch.tensor([0, 5, 64]), draws=3, seed=7)
    for level in p.levels:
        units = p.units(level)
        assert list(units) == [f"layer2.{i}" for i in range(4)]
        for name, idx in units.items():
            assert len(idx) == level.k
            if level.order == "selective":
                ranked = sorted(range(64), key=lambda i: -float(si[name][i]))
                assert sorted(idx.tolist()) == sorted(ranked[: level.k])
    assert {(lv.order, lv.draw) for lv in p.levels} == {("selective", 0), ("random", 0), ("random", 1), ("random", 2)}
    randoms = [p.orders[("layer2", "random", d)]["layer2.0"] for d in range(3)]
    assert not torch.equal(randoms[0], randoms[1]) and not torch.equal(randoms[1], randoms[2])
    # The same seed gives the same draws.
    q = plan(model, "layer2", si, ks=[0, 5, 64], draws=3, seed=7)
    assert all(torch.equal(q.orders[key][n], p.orders[key][n]) for key in p.orders for n in p.orders[key])


def test_default_ks(narrow):
    assert default_ks(64) == [0, 6, 13, 19, 26, 32, 38, 45, 51, 58, 64]
    assert default_ks(4) == [0, 1, 2, 3, 4]
    model, _, si = narrow
    p = plan(model, ["layer1", "layer4"], si, draws=3)
    assert [lv.k for lv in p.levels if lv.module == "layer4" and lv.order == "selective"] == default_ks(256)
    assert len(p.levels) == 2 * 11 * 4


# --- curves: fast vs naive vs an independent hook ----------------------------------------


def assert_same_curves(fast, naive):
    pd.testing.assert_frame_equal(fast, naive, check_exact=True)


def assert_curve_ends(curve, loader):
    """The ends of a curve of a :func:`constructed` model, known without running it.

    Unablated, every prediction is right; with every unit of a module zeroed, the rest of
    the network sees one constant input and predicts one class for all images, so the
    accuracy is at most the largest class share (7 of 61, 4 of 32): the levels between
    run on a model whose predictions the ablations change.
    """
    labels = torch.cat([y for _, y in loader])
    largest_share = labels.bincount().max().item() / len(labels)
    assert (curve.loc[curve.k == 0, "accuracy"] == 1).all()
    full = curve.loc[curve.k == curve.units, "accuracy"]
    assert len(full) and (full <= largest_share).all() and full.nunique() == 1


@pytest.mark.parametrize("module", MODULES)
def test_fast_curve_equals_naive_narrow(narrow, module):
    model, loader, si = narrow
    ks = default_ks(bottlenecks(model, module)[0].channels, levels=6)
    naive = ablation_curve_naive(model, loader, module, si, ks=ks, draws=2, seed=3)
    fast = ablation_curve(model, loader, module, si, ks=ks, draws=2, seed=3)
    assert_same_curves(fast, naive)
    for stack in (1, 3):
        assert_same_curves(ablation_curve(model, loader, module, si, ks=ks, draws=2, seed=3, stack=stack), naive)
    for chunk in (2, 7, 19):  # batches of 20 (and one of 1) in pieces: 2s; 7, 7, 6; 20 (no piece of 1)
        assert_same_curves(ablation_curve(model, loader, module, si, ks=ks, draws=2, seed=3, chunk=chunk), naive)
    assert_curve_ends(naive, loader)
    assert naive.groupby(["order", "draw"]).size().to_dict() == {("random", 0): 6, ("random", 1): 6, ("selective", 0): 6}


def test_fast_curve_of_all_modules_in_one_pass(narrow):
    model, loader, si = narrow
    ks = {"layer1": [0, 7, 32], "layer2": [0, 40, 64], "layer3": [0, 1, 128], "layer4": [0, 100, 256]}
    both = ablation_curve(model, loader, MODULES, si, ks=ks, draws=2)
    assert_same_curves(both, ablation_curve_naive(model, loader, MODULES, si, ks=ks, draws=2))
    single = pd.concat([ablation_curve(model, loader, m, si, ks=ks, draws=2) for m in MODULES], ignore_index=True)
    assert_same_curves(both, single)


@pytest.mark.parametrize("module", MODULES)
def test_fast_curve_equals_naive_resnet18(resnet18, module):
    model, loader, si = resnet18
    units = bottlenecks(model, module)[0].channels
    ks = [0, units // 8, units // 2, units]
    naive = ablation_curve_naive(model, loader, module, si, ks=ks, draws=2, seed=1)
    fast = ablation_curve(model, loader, module, si, ks=ks, draws=2, seed=1)
    assert_same_curves(fast, naive)
    assert_curve_ends(naive, loader)


def test_curve_columns_and_normalisation(narrow):
    model, loader, si = narrow
    df = ablation_curve(model, loader, "layer3", si, ks=[0, 16, 128], orders=["random", "selective"], draws=2)
    assert list(df.columns[:7]) == ["module", "number", "order", "draw", "k", "units", "fraction"]
    assert {"accuracy", "normalized"} <= set(df.columns)
    assert (df["module"] == "layer3").all() and (df["number"] == 6).all()
    assert df["fraction"].tolist() == [0, 0.125, 1] * 3
    assert df["order"].tolist()[:6] == ["random"] * 6
    assert (df["samples"] == 61).all()
    # Accuracy at k = 0 is the model's own, and normalised accuracy divides by it.
    labels = torch.cat([y for _, y in loader])
    base = (predictions(model, loader) == labels).double().mean().item()
    assert np.allclose(df.loc[df.k == 0, "accuracy"], base)
    assert np.allclose(df["normalized"], df["accuracy"] / base)
    # k = all units: every order zeroes the whole module, so all orders agree.
    assert df.loc[df.k == 128, "accuracy"].nunique() == 1


def zero_by_hand(model, units):
    """Independent reference: plain hooks that multiply the chosen channels by 0."""
    modules = dict(model.named_modules())
    handles = []
    for name, idx in units.items():
        mask = torch.ones(modules[name].bn3.num_features if hasattr(modules[name], "bn3") else modules[name].bn2.num_features)
        mask[idx] = 0
        handles.append(modules[name].register_forward_hook(lambda _m, _i, out, mask=mask: out * mask[:, None, None]))
    return handles


def test_selective_level_matches_hand_made_ablation(narrow):
    model, loader, si = narrow
    k = 9
    df = ablation_curve(model, loader, "layer2", si, ks=[0, k], orders=["selective"])
    top = {
        f"layer2.{i}": sorted(range(64), key=lambda u: -float(si[f"layer2.{i}"][u]))[:k] for i in range(4)
    }
    handles = zero_by_hand(model, top)
    try:
        labels = torch.cat([y for _, y in loader])
        expected = (predictions(model, loader) == labels).sum().item()
    finally:
        for h in handles:
            h.remove()
    assert df.loc[df.k == k, "correct"].item() == expected


# --- AUC ------------------------------------------------------------------------------


def test_auc_is_sum_of_normalised_accuracy(narrow):
    model, loader, si = narrow
    df = ablation_curve(model, loader, ["layer1", "layer4"], si, ks={"layer1": [0, 3, 20, 32], "layer4": [0, 200]})
    expected = {}
    for row in df.itertuples():
        key = (row.module, row.order, row.draw)
        expected[key] = expected.get(key, 0.0) + row.normalized
    got = auc(df)
    assert len(got) == len(expected) == 2 * 4
    for row in got.itertuples():
        assert row.auc == pytest.approx(expected[(row.module, row.order, row.draw)], rel=1e-12)
        assert row.number == {"layer1": 4, "layer4": 7}[row.module]
    # A sweep's columns tell curves apart when named.
    sweep = pd.concat([df.assign(epoch=0), df.assign(epoch=1, normalized=df.normalized / 2)])
    by_epoch = auc(sweep, by="epoch")
    assert len(by_epoch) == 16
    assert np.allclose(by_epoch[by_epoch.epoch == 1].auc.values, got.auc.values / 2)
    with pytest.raises(ValueError, match="seed"):
        auc(sweep, by=["seed"])


def test_auc_by_hand_example():
    df = pd.DataFrame(
        {
            "module": "layer3",
            "number": 6,
            "order": ["selective"] * 3 + ["random"] * 3,
            "draw": 0,
            "k": [0, 1, 2] * 2,
            "normalized": [1.0, 0.5, 0.25, 1.0, 0.75, 0.5],
        }
    )
    got = auc(df).set_index("order")["auc"]
    assert got["selective"] == 1.75 and got["random"] == 2.25


# --- bad inputs -------------------------------------------------------------------------


def test_bad_inputs_name_the_value(narrow):
    model, loader, si = narrow
    with pytest.raises(ValueError, match="layer9.0"):
        with ablate(model, {"layer9.0": [0]}):
            pass
    with pytest.raises(ValueError, match=r"layer1\.7.*layer1\.0"):
        with ablate(model, {"layer1.7": [0]}):
            pass
    with pytest.raises(ValueError, match=r"unit 32 .*'layer1.0'.*32 channels"):
        with ablate(model, {"layer1.0": [0, 32]}):
            pass
    with pytest.raises(ValueError, match="unit -1"):
        with ablate(model, {"layer1.0": [-1]}):
            pass
    with pytest.raises(ValueError, match="integer"):
        with ablate(model, {"layer1.0": [0.5]}):
            pass
    assert all(not b.block._forward_hooks for b in bottlenecks(model))

    with pytest.raises(ValueError, match="layer5"):
        ablation_curve(model, loader, "layer5", si)
    partial = {k: v for k, v in si.items() if k != "layer3.4"}
    with pytest.raises(ValueError, match=r"layer3\.4"):
        ablation_curve(model, loader, "layer3", partial)
    with pytest.raises(ValueError, match="greedy"):
        ablation_curve(model, loader, "layer3", si, orders=("selective", "greedy"))
    with pytest.raises(ValueError, match="greedy"):
        unit_order(si, "greedy")
    with pytest.raises(ValueError, match="k=33"):
        ablation_curve(model, loader, "layer1", si, ks=[0, 33])
    with pytest.raises(ValueError, match="draws"):
        ablation_curve(model, loader, "layer1", si, draws=0)
    short = dict(si, **{"layer2.0": torch.zeros(5)})
    with pytest.raises(ValueError, match=r"layer2\.0.*\(5,\)"):
        ablation_curve_naive(model, loader, "layer2", short)
    with pytest.raises(ValueError, match="layer2"):
        ablation_curve(model, loader, ["layer1", "layer2"], si, ks={"layer1": [0, 1]})
    with pytest.raises(ValueError, match="stack"):
        ablation_curve(model, loader, "layer1", si, stack=0)
    for chunk in (1, True, 2.5):
        with pytest.raises(ValueError, match=rf"chunk must be an integer >= 2 or None, got {chunk!r}"):
            ablation_curve(model, loader, "layer1", si, chunk=chunk)
    nan = dict(si, **{"layer1.0": torch.full((32,), float("nan"))})
    with pytest.raises(ValueError, match=r"layer1\.0.*NaN"):
        ablation_curve(model, loader, "layer1", nan, orders=["selective"])


def test_mode_is_restored(narrow):
    model, loader, si = narrow
    model.train()
    try:
        ablation_curve(model, loader, "layer4", si, ks=[0, 1], draws=1)
        assert model.training
        ablation_curve_naive(model, loader, "layer4", si, ks=[0, 1], draws=1)
        assert model.training
    finally:
        model.eval()
    ablation_curve(model, loader, "layer4", si, ks=[0, 1], draws=1)
    assert not model.training


def test_a_caption_names_the_images_behind_the_points():
    from classsel.ablation_curves import images_text

    assert images_text(pd.DataFrame({"samples": [500, 500, 500]})) == "500 validation images"
    assert images_text(pd.DataFrame({"samples": [1000, 500]})) == "500 to 1,000 validation images"
    with pytest.raises(ValueError, match="samples column"):
        images_text(pd.DataFrame({"k": [0]}))
