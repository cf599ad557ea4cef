"""toyllora.protocol: the method table, the one optimizer, the failure rule, tuning and scoring."""

import jax
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from toyllora import optim, protocol
from toyllora.data import deep_teacher
from toyllora.lora import LoraParams
from toyllora.testing import rel_error, tol


def test_method_table():
    assert protocol.method_config("full", 4) is None
    lora = protocol.method_config("lora", 4)
    assert (lora.keep, lora.s, lora.method) == (0.95, 4.0, "lora")
    assert protocol.method_config("lora-d0", 4).keep == 1.0
    assert protocol.method_config("rslora", 4).s == pytest.approx(8.0)
    assert protocol.method_config("dora", 4).dora and protocol.method_config("pissa", 4).init == "pissa"
    assert protocol.method_config("init_b", 4).init == "init_b"
    for m, e2 in protocol.ETA2.items():
        c = protocol.method_config(m, 4)
        assert c.method == "allora" and c.s == 1.0 and c.keep == 1.0 and c.eta ** 2 == pytest.approx(e2)
    assert protocol.method_config("allora+D", 4).keep == 0.95
    assert protocol.method_config("allora-OD", 4).method == "allora_od"
    assert protocol.method_config("asf", 4).method == "asf"
    assert protocol.method_config("lora-x-eta", 4).s == 2.0
    assert protocol.method_config("allora-B", 4).adapt == "B" and protocol.method_config("allora-A", 4).adapt == "A"
    assert protocol.optimizer_hp("sgd", "lora+16")["b_ratio"] == 16.0
    assert protocol.optimizer_hp("adam", "scaled") == {"adam": 1.0, "b_ratio": 1.0}
    # every LoRA-family scale is distinct at the protocol's rank, so no two methods coincide by accident
    scales = {m: protocol.method_config(m, 4).s for m in ("lora", "rslora", "lora-x-eta", "allora")}
    assert len(set(scales.values())) == len(scales)


@pytest.mark.parametrize("bad, field", [
    (lambda: protocol.method_config("qlora", 4), "method:"),
    (lambda: protocol.optimizer_hp("rmsprop", "lora"), "optimizer:"),
    (lambda: protocol.make_task("mnist"), "task:"),
    (lambda: protocol.run(("nope",), budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS, progress=False),
     "methods:"),
    (lambda: protocol.run(("lora",), budget=protocol.FAST_BUDGET, tasks=("nope",), progress=False), "tasks:"),
    (lambda: protocol.run(("lora",), budget=True, tasks=protocol.FAST_TASKS, progress=False), "budget:"),
    (lambda: protocol.lr_grid("sgd", True), "budget:"),
    (lambda: protocol.score_points("ranking", test_loss=1.0, base_loss=1.0), "kind:"),
])
def test_bad_input(bad, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        bad()


def _reference(kind, lr, ratio):
    if kind == "sgd":
        return optim.lora_plus(lr, ratio=ratio, optimizer="sgd")
    if kind == "adam":
        return optim.lora_plus(lr, ratio=ratio, optimizer="adam")
    if kind == "scaled_sgd":
        return optim.scaled_gd(lr)
    return optim.scaled_adamw(lr)


@given(st.integers(0, 2**31 - 1), st.sampled_from([(6, 3, 2), (8, 5, 4)]),
       st.sampled_from(["sgd", "adam", "scaled_sgd", "scaled_adam"]), st.sampled_from([1.0, 16.0]))
def test_protocol_optimizer_equals_each_reference(seed, shape, kind, ratio):
    """The flag-selected update is exactly the chosen optimizer's, over several steps (state included)."""
    d_out, d_in, r = shape
    if kind.startswith("scaled"):
        ratio = 1.0
    ks = jax.random.split(jax.random.key(seed), 4)
    p = LoraParams(A=jax.random.normal(ks[0], (r, d_in)), B=0.3 * jax.random.normal(ks[1], (d_out, r)))
    hp = {"lr": 0.05, "b_ratio": ratio, "adam": float("adam" in kind)}
    ours, ref = protocol.ProtocolOptimizer(scaled=kind.startswith("scaled"))(hp), _reference(kind, 0.05, ratio)
    s1, s2, p1, p2 = ours.init(p), ref.init(p), p, p
    for t in range(3):
        g = jax.tree.map(lambda a: jax.random.normal(jax.random.fold_in(ks[2], t), a.shape), p1)
        u1, s1 = ours.update(g, s1, p1)
        u2, s2 = ref.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    assert rel_error(p1.A, p2.A) <= 10 * tol() and rel_error(p1.B, p2.B) <= 10 * tol()


def test_failure_rule_scores_base_model():
    # 3 runs, 3 records (steps 0, 10, 20): fine; diverged at step 5; loss exploded (> 1000 × base)
    loss = np.array([[1.0, 0.5, 0.25], [1.0, 0.9, 0.8], [1.0, 2e3, 5e3]])
    sc, failed = protocol.score_runs("regression", {"test_loss": loss}, np.array([-1, 5, -1]), record=2, step=20)
    assert failed.tolist() == [False, True, True]
    assert sc[0] == pytest.approx(75.0) and sc[1] == 0.0 and sc[2] == 0.0
    # a divergence after the budget's step does not count at that budget
    sc, failed = protocol.score_runs("regression", {"test_loss": loss[:2]}, np.array([-1, 15]), record=1, step=10)
    assert failed.tolist() == [False, False]
    acc = np.array([[0.5, 0.9], [0.5, 0.1]])
    loss = np.array([[1.0, 0.2], [1.0, np.nan]])
    sc, failed = protocol.score_runs("classification", {"test_loss": loss, "test_acc": acc}, np.array([-1, -1]),
                                     record=1, step=10)
    assert failed.tolist() == [False, True] and sc.tolist() == [90.0, 50.0]


def test_grids_and_seeds():
    assert protocol.budget(True) == protocol.FAST_BUDGET and protocol.budget(False) == protocol.FULL_BUDGET
    for fast in (True, False):
        b = protocol.budget(fast)
        for o in protocol.OPTIMIZERS:
            g = np.log2(protocol.lr_grid(o, b))
            assert np.allclose(np.diff(g), b.lr_step) and g[-1] == protocol.LR_TOP[o]
            for m in ("lora", "allora", "full", "dora"):
                assert np.array_equal(protocol.lr_grid(o, b, m), 2.0 ** g)
            assert np.allclose(16.0 * protocol.lr_grid(o, b, "lora+16"), 2.0 ** g)  # B's lr spans the grid
        tune, final = protocol.seeds(0, b)
        assert not set(tune) & set(final) and b.draws * len(final) >= 8  # paired units per comparison


def test_deep_teacher_target_is_exact_without_noise():
    base, d, dv = deep_teacher(seed=3, layers=3, d=8, n_train=64, base="orthogonal", noise=0.0, shift_rank=2, shift=0.5)
    rng = np.random.default_rng(3)  # rebuild the teacher from the same stream
    Ws = [np.linalg.qr(rng.standard_normal((8, 8)))[0] for _ in range(3)]
    assert all(rel_error(W, B) <= tol() for W, B in zip(Ws, base))
    assert d.X.shape == dv.X.shape and d.X_test.shape == dv.X_test.shape  # val/test share one compile


def test_tune_and_test_selects_best_validation_lr_and_pairs_seeds():
    task = protocol.make_task("ols-low", 0)
    b = protocol.FAST_BUDGET
    res = protocol.tune_and_test(task, "allora", "adam", 0, b)
    for name in protocol.BUDGETS:
        r = res[name]
        assert r["lr"] == res["grid"]["lr"][protocol.select(r["val_scores"], r["val_failures"])]
        assert r["scores"].shape == (b.final_seeds,) and np.all(np.isfinite(r["scores"]))
        assert r["n_failed"] == int(r["failed"].sum())
        n_ext = sum(r["extended"].values())  # the grid grows by one log2 step per extension at an edge
        assert len(r["val_scores"]) == len(res["grid"]["lr"]) == b.lr_points + n_ext
        assert n_ext <= 2 * b.max_extension
    assert res["final_seeds"] == protocol.seeds(0, b)[1]


# -- the claims' comparison helpers and verdict rules, on synthetic results (no training) -------------


def _fake_results(shift, n_draws=3, per_draw=4, seed=0):
    """results[task][method][opt][budget] tune_and_test entries with allora = lora + shift (+ small noise)."""
    rng = np.random.default_rng(seed)
    n = n_draws * per_draw
    groups = np.repeat(np.arange(n_draws), per_draw)
    out = {"toy": {}}
    base = {(b, o): rng.normal(50, 2, n) for b in protocol.BUDGETS for o in protocol.OPTIMIZERS}
    for m, s in (("lora", 0.0), ("allora", shift)):
        out["toy"][m] = {o: {b: {"scores": base[b, o] + s + rng.normal(0, 0.05, n), "groups": groups,
                                 "n_failed": 0, "at_edge": False, "lr": 0.1}
                             for b in protocol.BUDGETS} for o in protocol.OPTIMIZERS}
    return out


@pytest.mark.parametrize("shift, expected", [(1.0, "supported"), (-1.0, "not supported"), (0.0, None)])
def test_compare_and_vs_lora_rule(shift, expected):
    from toyllora.claims.allora import _common, vs_lora

    res = _fake_results(shift)
    diffs = _common.decide(_common.compare_methods(res, [("allora", "lora")], ["toy"]))
    table = _common.diff_table(diffs)
    n = len(protocol.BUDGETS) * len(protocol.OPTIMIZERS)
    assert len(diffs) == n and table.count("\n") == n + 1
    per_opt = {o: _common.tally([d for d in diffs if d["optimizer"] == o]) for o in protocol.OPTIMIZERS}
    verdict = vs_lora.verdict({"per_optimizer": per_opt})
    if expected is None:  # no true difference: never "supported"
        assert verdict != "supported"
    else:
        assert verdict == expected
        assert _common.tally(diffs)["mean_difference"] == pytest.approx(shift, abs=0.1)
    # a cell at a grid edge is a win for neither side
    res["toy"]["allora"][protocol.OPTIMIZERS[0]][protocol.BUDGETS[0]]["at_edge"] = True
    edged = _common.decide(_common.compare_methods(res, [("allora", "lora")], ["toy"]))
    assert edged[0]["edge"] and edged[0]["win"] == 0


def test_dropout_neutral_rule():
    from toyllora.claims.allora import dropout_neutral

    case = lambda negl, mat, n=12: {"n": n, "negligible": negl, "material": mat, "undetermined": n - negl - mat}
    assert dropout_neutral.verdict(case(12, 0)) == "supported"
    assert dropout_neutral.verdict(case(2, 6)) == "not supported"
    assert dropout_neutral.verdict(case(6, 3)) == "partly supported"
    assert dropout_neutral.verdict(case(3, 0)) == "inconclusive"


def test_select_never_prefers_a_failing_setting():
    # every working setting is worse than the base model (negative points), failing ones score 0
    assert protocol.select([-11.3, -13.6, 0.0, 0.0], [0, 0, 4, 4]) == 0
    assert protocol.select([1.0, 5.0, 3.0], [0, 0, 0]) == 1
    assert protocol.select([1.0, 5.0, 3.0], [2, 1, 1]) == 1   # all fail somewhere: fewest failures, best score
    assert protocol.select([2.0, 2.0], [0, 0]) == 0            # ties: the smaller learning rate
