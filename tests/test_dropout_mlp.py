"""Dropout with a traced keep probability (Trainer hooks), the exact last-layer closed form of the digits MLP,
the 1/√N law and the masks-for-accuracy count behind dropout.concentration, the mask noise that keeps SGD off
the expected-loss minimizer (dropout.iterates, dropout.steps-vs-stepsize), and the helpers of the dropout claims
(toyllora.claims.dropout: the flat run engine, subsets, selection, crossings)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from toyllora.theory import dropout as dt
from toyllora import models, pretrain
from toyllora.claims.dropout import _common as dcommon
from toyllora.claims.dropout.crossover import crossing
from toyllora.claims.dropout.output_ols import best_ridge_distance
from toyllora.lora import LoraParams
from toyllora.config import LoraConfig
from toyllora.data import Data, teacher_student
from toyllora.testing import rel_error, tol
from toyllora.train import Trainer

SIZES = (6, 5, 4, 3)


def _mlp(seed, keep=1.0, method="lora"):
    if method == "lora":
        cfg = LoraConfig(rank=2, alpha=2.0, keep=keep, dropout_site="input", init="both")
    else:
        cfg = LoraConfig(rank=2, method="allora", scaling="none", keep=keep, init="both")
    model = models.MLPLoRA(cfg)
    base = models.init_mlp(jax.random.key(seed), SIZES)
    base = tuple((W, b + 0.1) for W, b in base)
    frozen, params = model.init(jax.random.key(seed + 1), base)
    X = jax.random.normal(jax.random.key(seed + 2), (10, SIZES[0]))
    labels = jax.random.randint(jax.random.key(seed + 3), (10,), 0, SIZES[-1])
    return model, frozen, params, X, labels


@given(st.integers(0, 2**16), st.sampled_from([0.5, 0.8]), st.sampled_from(["lora", "allora"]))
def test_mlp_apply_dropout_draws_the_library_masks(seed, keep, method):
    model, frozen, params, X, _ = _mlp(seed, keep, method)
    key = jax.random.key(seed + 4)
    ours = dt.mlp_apply_dropout(model, frozen, params, X, key, keep)
    lib = model.apply(frozen, params, X, train=True, key=key)
    assert rel_error(ours, lib) <= 10 * tol()


def test_mlp_keep_one_is_the_eval_model_exactly():
    model, frozen, params, X, labels = _mlp(0)
    out = dt.mlp_apply_dropout(model, frozen, params, X, jax.random.key(0), 1.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(model.apply(frozen, params, X)))
    e = dt.mlp_last_layer_expected_mse(model, frozen, params, X, labels, 1.0)
    s = dt.mlp_last_layer_sampled_mse(model, frozen, params, X, labels, jax.random.key(1), 1.0)
    assert float(s) == pytest.approx(float(e), rel=tol())


@given(st.integers(0, 2**16), st.sampled_from([0.6, 0.9]))
def test_mlp_last_layer_closed_form_matches_monte_carlo(seed, keep):
    model, frozen, params, X, labels = _mlp(seed)
    n = 4000
    vals = np.asarray(jax.vmap(lambda k: dt.mlp_last_layer_sampled_mse(model, frozen, params, X, labels, k, keep))(
        jax.random.split(jax.random.key(seed), n)), np.float64)
    closed = float(dt.mlp_last_layer_expected_mse(model, frozen, params, X, labels, keep))
    assert abs(vals.mean() - closed) <= 5 * vals.std(ddof=1) / np.sqrt(n) + tol() * closed


@given(st.integers(0, 2**16), st.sampled_from([0.6, 0.9]), st.sampled_from(["input", "bottleneck", "output"]))
def test_sampled_loss_keep_draws_the_library_masks(seed, keep, site):
    t = teacher_student(seed=seed % 50, d_in=6, d_out=4, n_train=8, n_test=4, shift_rank=1)
    cfg = LoraConfig(rank=2, alpha=3.0, keep=keep, dropout_site=site, init="both")
    W, p = models.LinearLoRA(cfg).init(jax.random.key(seed), t.W0)
    key = jax.random.key(seed + 1)
    a = dt.sampled_loss_keep(W, p, t.data.X, t.data.Y, key, jnp.asarray(keep), site, cfg.s)
    b = dt.sampled_loss(W, p, t.data.X, t.data.Y, cfg, key)
    assert rel_error(a, b) <= 10 * tol()


def test_carried_keep_one_trains_exactly_like_no_dropout():
    t = teacher_student(seed=0, d_in=6, d_out=3, n_train=16, n_test=8, shift_rank=1)
    model = models.LinearLoRA(LoraConfig(rank=2, keep=1.0, dropout_site="bottleneck"))
    a = Trainer(model, "sgd", steps=20, stride=10).run(t.W0, t.data, {"lr": 0.1}, seed=1)
    for obj in (dt.linear_sampled_objective, dt.linear_expected_objective):
        b = Trainer(model, "sgd", steps=20, stride=10, objective=obj, init=dt.init_with_keep,
                    metrics=lambda m, base, fk, p, d: {"test_loss": models.loss(m, fk[0], p, d.X_test, d.Y_test)}
                    ).run((t.W0, jnp.asarray(1.0)), t.data, {"lr": 0.1}, seed=1)
        np.testing.assert_array_equal(np.asarray(a.params.B), np.asarray(b.params.B))
        np.testing.assert_array_equal(np.asarray(a.metrics["test_loss"]), np.asarray(b.metrics["test_loss"]))


def test_mlp_expected_objective_in_a_trainer_lowers_the_expected_loss():
    model, frozen, params, X, labels = _mlp(1)
    base = tuple(zip(frozen[0], frozen[1]))
    data = Data(X, labels, X, labels)
    tr = Trainer(model, "adam", steps=60, stride=60, objective=dcommon.mlp_switch_objective, init=dt.init_with_keep,
                 metrics=lambda m, b, fk, p, d: {"e": dt.mlp_last_layer_expected_mse(m, fk[0], p, d.X, d.Y, fk[1])})
    h = tr.run((base, jnp.asarray(0.7), jnp.asarray(1.0)), data, {"lr": 0.02}, seed=0)
    e = np.asarray(h.metrics["e"])
    assert e[-1] < e[0]


@given(st.integers(0, 2**16))
def test_mc_average_rms_is_std_over_sqrt_n(seed):
    """Var(mean of N iid losses) = Var/N, so the RMS gap is Std/√N (dropout.concentration's reference line)."""
    t = teacher_student(seed=seed % 50, d_in=6, d_out=3, n_train=16, n_test=4, shift_rank=1)
    cfg = LoraConfig(rank=2, alpha=2.0, keep=0.7, dropout_site="bottleneck", init="both")
    W, p = models.LinearLoRA(cfg).init(jax.random.key(seed), t.W0)
    reps, N = 2000, 8
    vals = np.asarray(jax.vmap(lambda k: dt.sampled_loss(W, p, t.data.X, t.data.Y, cfg, k))(
        jax.random.split(jax.random.key(seed + 1), reps * N)), np.float64).reshape(reps, N)
    closed = float(dt.expected_loss(W, p, t.data.X, t.data.Y, cfg))
    ms = np.mean((vals.mean(1) - closed) ** 2)          # estimates Var/N
    var = vals.var(ddof=1)
    # the mean of `reps` squared ~N(0, Var/N) values has relative SE sqrt(2/reps) ≈ 3.2 %; allow 5 SE
    assert abs(ms / (var / N) - 1) <= 5 * np.sqrt(2 / reps)


LOSS_CHUNK = 2**16


@functools.lru_cache(maxsize=None)
def _chunk_losses(cfg):
    return jax.jit(jax.vmap(lambda W, p, X, Y, k: dt.sampled_loss(W, p, X, Y, cfg, k), in_axes=(None,) * 4 + (0,)))


def _sampled_losses(W, p, X, Y, cfg, keys) -> np.ndarray:
    """``dt.sampled_loss`` under each key, in fixed-size jitted chunks (the last padded): one compiled program
    for every mask count, instead of one per count."""
    n = keys.shape[0]
    sel = np.arange(-(-n // LOSS_CHUNK) * LOSS_CHUNK) % n
    fn = _chunk_losses(cfg)
    out = [np.asarray(fn(W, p, X, Y, keys[sel[i:i + LOSS_CHUNK]]), np.float64) for i in range(0, sel.size, LOSS_CHUNK)]
    return np.concatenate(out)[:n]


@given(st.integers(0, 2**16), st.sampled_from([0.01, 0.05]))
def test_masks_for_accuracy_gives_the_stated_rms_error(seed, accuracy):
    """With N = (Std/(ε·E L))² masks, the N-mask average is ε·E L from E L in RMS (dropout.concentration's count)."""
    t = teacher_student(seed=seed % 50, d_in=6, d_out=3, n_train=16, n_test=4, shift_rank=1)
    cfg = LoraConfig(rank=2, alpha=2.0, keep=0.7, dropout_site="bottleneck", init="both")
    W, p = models.LinearLoRA(cfg).init(jax.random.key(seed), t.W0)
    closed = float(dt.expected_loss(W, p, t.data.X, t.data.Y, cfg))
    probe = _sampled_losses(W, p, t.data.X, t.data.Y, cfg, jax.random.split(jax.random.key(seed + 1), 4000))
    N = int(np.ceil(dt.masks_for_accuracy(probe.std(ddof=1), closed, accuracy)))
    reps = 1000
    vals = _sampled_losses(W, p, t.data.X, t.data.Y, cfg,
                           jax.random.split(jax.random.key(seed + 2), reps * N)).reshape(reps, N)
    rms = np.sqrt(np.mean((vals.mean(1) - closed) ** 2))
    # the RMS over `reps` repetitions has relative SE ≈ sqrt(1/(2 reps)); σ from 4000 probes adds ≈ sqrt(1/8000)
    assert abs(rms / (accuracy * closed) - 1) <= 5 * np.sqrt(1 / (2 * reps) + 1 / 8000) + 1 / N


def test_masks_for_accuracy_rejects_non_positive_inputs():
    with pytest.raises(ValueError, match=r"^accuracy: "):
        dt.masks_for_accuracy(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"^std: "):
        dt.masks_for_accuracy(float("nan"), 1.0, 0.01)


@given(st.integers(0, 2**16), st.sampled_from([0.6, 0.9]))
def test_sampled_gradient_at_the_expected_minimizer_is_mean_zero_but_noisy(seed, keep):
    """At ΔW* (input-dropout ridge) the expected-loss gradient is 0 but the one-mask gradient is not: its variance
    is positive, so ΔW* is not a fixed point of constant-step SGD on sampled dropout (dropout.steps-vs-stepsize)."""
    t = teacher_student(seed=seed % 50, d_in=4, d_out=4, n_train=12, n_test=4, shift_rank=2, noise=0.3)
    X, Y, W = t.data.X, t.data.Y, t.W0
    D = dt.input_dropout_ridge(X, Y - X @ W.T, keep)
    U, S, Vt = jnp.linalg.svd(D)
    p = LoraParams(A=jnp.sqrt(S)[:, None] * Vt, B=U * jnp.sqrt(S)[None, :])
    cfg = LoraConfig(rank=4, alpha=4.0, keep=keep, dropout_site="input")
    g = jax.vmap(jax.grad(lambda p, k: dt.sampled_loss(W, p, X, Y, cfg, k)), in_axes=(None, 0))(
        p, jax.random.split(jax.random.key(seed), 4000))
    gB = np.asarray(g.B, np.float64)
    se = gB.std(axis=0, ddof=1) / np.sqrt(len(gB))
    assert np.all(np.abs(gB.mean(0)) <= 6 * se + 100 * tol() * np.abs(gB).max())   # mean zero (Bonferroni)
    scale = float(jnp.abs(dt.expected_loss_grad(W, LoraParams(A=p.A, B=0 * p.B), X, Y, cfg).B).max())
    assert float(gB.std(axis=0).max()) > 0.01 * scale   # but noisy: a per-mask spread of >= 1 % of the gradient scale


def test_decaying_sgd_is_constant_then_harmonic():
    opt = dcommon.decaying_sgd({"lr": 0.5, "t0": 10.0})
    p = jnp.zeros(())
    state = opt.init(p)
    steps = []
    for t in range(40):
        u, state = opt.update(jnp.ones(()), state, p)
        steps.append(-float(u))
    assert steps[0] == steps[9] == pytest.approx(0.5)
    assert steps[19] == pytest.approx(0.5 * 10 / 19) and steps[39] == pytest.approx(0.5 * 10 / 39)
    const = dcommon.decaying_sgd({"lr": 0.5, "t0": 1e9})
    u, _ = const.update(jnp.ones(()), const.init(p), p)
    assert -float(u) == pytest.approx(0.5)


def test_run_flat_equals_one_sweep_per_draw():
    """The flat engine (draws stacked and indexed inside one vmapped program) gives the runs Trainer.sweep gives."""
    model = models.LinearLoRA(LoraConfig(rank=2, alpha=2.0, keep=0.5, dropout_site="input"))
    tr = Trainer(model, "sgd", steps=20, stride=10, objective=dt.linear_sampled_objective, init=dt.init_with_keep,
                 metrics=lambda m, b, fk, p, d: {"test_loss": models.loss(m, fk[0], p, d.X_test, d.Y_test)})
    ts = [teacher_student(seed=s, d_in=5, d_out=3, n_train=16, n_test=8, shift_rank=1) for s in (0, 1)]
    idx, keep, lr, seeds = [1, 0, 1], [0.8, 0.8, 0.6], [0.1, 0.2, 0.1], [3, 4, 5]
    m, dv = dcommon.run_flat(tr, [(t.W0,) for t in ts], [t.data for t in ts], idx, (keep,), {"lr": lr}, seeds, chunk=2)
    for i in range(3):
        h = tr.sweep((ts[idx[i]].W0, jnp.asarray(keep[i])), ts[idx[i]].data, {"lr": np.asarray([lr[i]])}, [seeds[i]])
        np.testing.assert_allclose(m["test_loss"][i], np.asarray(h.metrics["test_loss"])[0, 0], rtol=10 * tol())
        assert dv[i] == int(np.asarray(h.diverged_step)[0, 0])


def test_subsample_duplicated_is_the_first_rows_at_the_same_shape():
    t = teacher_student(seed=0, d_in=4, d_out=2, n_train=16, n_test=4, shift_rank=1)
    sub = dcommon.subsample_duplicated(t.data, 4)
    assert sub.X.shape == t.data.X.shape
    np.testing.assert_array_equal(np.asarray(sub.X[4:8]), np.asarray(t.data.X[:4]))
    W = jnp.ones((2, 4))
    assert float(models.mse(sub.X @ W.T, sub.Y)) == pytest.approx(float(models.mse(t.data.X[:4] @ W.T, t.data.Y[:4])),
                                                                   rel=tol())
    with pytest.raises(ValueError, match=r"^small_n: "):
        dcommon.subsample_duplicated(t.data, 5)


def test_pick_selects_on_tuning_seeds_and_never_a_failed_point():
    p = dcommon.BudgetRuns(tune_seeds=2, final_seeds=1, draws=1, stride=10, short=10, long=20)
    cell = lambda v, div=-1: {"val_loss": np.asarray([[[9.0, v, v], [9.0, v, v], [0.0, 0.0, 0.0]]]),
                              "diverged": np.asarray([[div, div, -1]])}
    runs = {-8.0: cell(0.5), -7.0: cell(0.3), -6.0: cell(0.1, div=5)}   # -6 failed before step 10 in tuning
    exps, i, means = dcommon._pick(p, runs, 10)
    assert exps[i] == -7.0 and means[2] == np.inf                          # the fresh seed (0.0) is never looked at


def test_window_mean_and_band_decision():
    rec = [0, 10, 20, 30, 40]
    assert dcommon.window_mean(np.asarray([0.0, 1.0, 2.0, 3.0, 4.0]), rec, 0.5, 1.0) == pytest.approx(3.0)
    assert dcommon.band_decision(0.9, 1.1, 0.8, 1.25) == 1
    assert dcommon.band_decision(0.5, 0.7, 0.8, 1.25) == -1
    assert dcommon.band_decision(0.7, 0.9, 0.8, 1.25) == 0 and dcommon.band_decision(None, 1.0, 0.8, 1.25) == 0


def test_crossing_interpolates_in_log_steps_and_censors():
    t, c = crossing([-1.0, -1.0, 1.0, 2.0], [10, 20, 40, 80])
    assert c is None and t == pytest.approx(np.sqrt(20 * 40))
    assert crossing([-1.0, 1.0, -1.0, 1.0], [10, 20, 40, 80])[0] == pytest.approx(np.sqrt(10 * 20))  # the first change
    assert crossing([0.5, -1.0], [10, 20]) == (10.0, "left")
    assert crossing([-1.0, 0.0], [10, 20]) == (float("inf"), "right")


def test_mc_site_rejects_a_wrong_closed_form():
    """The control of dropout.input-ridge / bottleneck-expectation: the Monte Carlo test has power to reject the
    penalty of the wrong site, and accepts the right one."""
    mc = dcommon.mc_site(0, "bottleneck", keeps=(0.6,), n_masks=2000, n_params=2, draws=1, d_in=6, d_out=4, rank=2,
                         n=24, s=2.0, cond=3.0, noise=0.3, control="output")
    assert dcommon.mc_agrees(mc) and dcommon.mc_has_power(mc)


def test_best_ridge_distance_is_zero_for_whitened_and_positive_otherwise():
    tw = teacher_student(seed=0, d_in=5, d_out=2, n_train=40, n_test=4, shift_rank=1, whiten=True, noise=0.5)
    d, lam, lam_formula = best_ridge_distance(tw.data.X, tw.data.Y, 0.8)
    assert d <= 1e-3 and abs(lam / lam_formula - 1) <= 1e-2
    tc = teacher_student(seed=0, d_in=5, d_out=2, n_train=40, n_test=4, shift_rank=1, cond=100.0, noise=0.5)
    assert best_ridge_distance(tc.data.X, tc.data.Y, 0.8)[0] > 0.01


def test_bad_arguments_name_their_field():
    model, frozen, params, X, _ = _mlp(0)
    with pytest.raises(ValueError, match=r"^layers: "):
        dt.mlp_apply_dropout(model, frozen, params, X, jax.random.key(0), 0.5, layers="first")
    with pytest.raises(ValueError, match=r"^loss: "):
        pretrain.digits_mlp(0, loss="hinge")
    with pytest.raises(ValueError, match=r"^model: "):
        dt.expected_objective(model, frozen, params, X, X)
    with pytest.raises(ValueError, match=r"^dropout_site: "):
        dt.mask_shape(X, params[0], "hidden")
