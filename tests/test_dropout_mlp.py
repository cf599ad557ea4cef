"""Dropout with a traced keep probability (Trainer hooks), the exact last-layer closed form of the digits MLP,
the 1/√N law behind dropout.concentration, and the small helpers of the dropout claims (toyllora.claims.dropout)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from toyllora.theory import dropout as dt
from toyllora import models, pretrain
from toyllora.claims.dropout import _common as dcommon
from toyllora.claims.dropout.iterates import settle_step
from toyllora.claims.dropout.output_ols import best_ridge_distance
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


def test_settle_step():
    steps = np.arange(11) * 10
    assert settle_step([0.2, 0.1, 0.01, 0.02, 0.01, 0.0, 0, 0, 0, 0, 0], steps, 0.05) == 20
    assert settle_step([0.01] * 11, steps, 0.05) == 0
    assert settle_step([0.01] * 10 + [0.1], steps, 0.05) is None
    assert settle_step([0.1] * 10 + [0.01], steps, 0.05) is None  # below only at the very end
    assert settle_step([0.1] * 9 + [0.01] * 2, steps, 0.05) == 90  # the last 10 % counts
    assert settle_step([0.1] * 8 + [0.01] * 3, steps, 0.05) == 80


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
