"""Closed forms of dropout in expectation (toyllora.dropout_theory) against Monte Carlo and autodiff.

Monte-Carlo tolerances come from the sample's standard error: ``|mean − closed| <= Z·SE + tol·scale``
with Z = 5 for one number and Z = 6 for the max over all gradient entries (Bonferroni over <= 200 entries).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from toyllora.theory import dropout as dt
from toyllora import lora, models
from toyllora.config import LoraConfig
from toyllora.lora import LoraParams
from toyllora.testing import rel_error, tol
from toyllora.train import Trainer

# (n, d_in, d_out, r): a few buckets to limit recompiles
BUCKETS = [(8, 5, 3, 2), (16, 6, 4, 3), (12, 4, 4, 4)]
KEEPS = [0.6, 0.8, 0.95]
N_MC = 4000


def _problem(seed, bucket, alpha=None):
    n, d_in, d_out, r = BUCKETS[bucket]
    ks = jax.random.split(jax.random.key(seed), 5)
    X = jax.random.normal(ks[0], (n, d_in))
    Y = jax.random.normal(ks[1], (n, d_out))
    W = jax.random.normal(ks[2], (d_out, d_in)) / np.sqrt(d_in)
    p = LoraParams(A=jax.random.normal(ks[3], (r, d_in)) / np.sqrt(d_in), B=jax.random.normal(ks[4], (d_out, r)))
    return X, Y, W, p, r


def _cfg(r, keep, site, alpha=None):
    return LoraConfig(rank=r, alpha=float(r) if alpha is None else alpha, keep=keep, dropout_site=site)


def _mc(fn, key, n=N_MC):
    vals = jax.vmap(fn)(jax.random.split(key, n))
    return vals


problems = st.tuples(st.integers(0, 2**16), st.integers(0, len(BUCKETS) - 1), st.sampled_from(KEEPS),
                     st.sampled_from(["input", "bottleneck", "output"]))


@given(problems)
def test_expected_loss_matches_monte_carlo(case):
    seed, bucket, keep, site = case
    X, Y, W, p, r = _problem(seed, bucket)
    cfg = _cfg(r, keep, site, alpha=2.0 * r)  # s = 2 exercises the scaling
    vals = np.asarray(_mc(lambda k: dt.sampled_loss(W, p, X, Y, cfg, k), jax.random.key(seed + 1)), np.float64)
    closed = float(dt.expected_loss(W, p, X, Y, cfg))
    se = vals.std(ddof=1) / np.sqrt(len(vals))
    assert abs(vals.mean() - closed) <= 5 * se + tol() * abs(closed), (vals.mean(), closed, se)


@given(problems)
def test_gradient_equals_expectation_of_sampled_gradient(case):
    seed, bucket, keep, site = case
    X, Y, W, p, r = _problem(seed, bucket)
    cfg = _cfg(r, keep, site)
    g = jax.vmap(jax.grad(lambda p, k: dt.sampled_loss(W, p, X, Y, cfg, k)), in_axes=(None, 0))(
        p, jax.random.split(jax.random.key(seed + 2), N_MC))
    closed = dt.expected_loss_grad(W, p, X, Y, cfg)
    for name in ("A", "B"):
        s = np.asarray(getattr(g, name), np.float64)
        c = np.asarray(getattr(closed, name), np.float64)
        se = s.std(axis=0, ddof=1) / np.sqrt(N_MC)
        slack = 6 * se + tol() * (np.abs(c).max() + 1e-30)
        assert np.all(np.abs(s.mean(axis=0) - c) <= slack), (name, np.max(np.abs(s.mean(0) - c) / slack))


@given(problems)
def test_explicit_gradient_equals_autodiff(case):
    seed, bucket, keep, site = case
    X, Y, W, p, r = _problem(seed, bucket)
    cfg = _cfg(r, keep, site, alpha=3.0)
    auto = jax.grad(lambda p: dt.expected_loss(W, p, X, Y, cfg))(p)
    closed = dt.expected_loss_grad(W, p, X, Y, cfg)
    assert rel_error(closed.A, auto.A) <= 10 * tol()
    assert rel_error(closed.B, auto.B) <= 10 * tol()


@given(st.integers(0, 2**16), st.integers(0, len(BUCKETS) - 1), st.sampled_from(KEEPS))
def test_bottleneck_is_the_papers_eq1(seed, bucket, keep):
    """Eq. (1): E||Y − XWᵀ − ((XAᵀ)⊙V)Bᵀ||² = ||Y − X(W+BA)ᵀ||² + (1−q)/q Σ_k ||(XAᵀ)_{:,k}||² ||B_{:,k}||²."""
    X, Y, W, p, r = _problem(seed, bucket)
    cfg = _cfg(r, keep, "bottleneck")  # s = 1
    paper = (jnp.sum(jnp.square(Y - X @ (W + p.B @ p.A).T)) + (1 - keep) / keep
             * jnp.sum(jnp.sum(jnp.square(X @ p.A.T), axis=0) * jnp.sum(jnp.square(p.B), axis=0)))
    assert rel_error(2 * X.shape[0] * dt.expected_loss(W, p, X, Y, cfg), paper) <= 10 * tol()


@given(st.integers(0, 2**16), st.integers(0, len(BUCKETS) - 1), st.sampled_from(KEEPS))
def test_input_dropout_is_weighted_ridge_on_delta(seed, bucket, keep):
    X, Y, W, p, r = _problem(seed, bucket)
    cfg = _cfg(r, keep, "input", alpha=1.5 * r)
    R = Y - X @ W.T
    ridge = dt.ridge_objective(lora.delta(p, cfg), X, R, (1 - keep) / keep, jnp.sum(jnp.square(X), axis=0))
    assert rel_error(dt.expected_loss(W, p, X, Y, cfg), ridge) <= tol(f64=1e-10, f32=1e-5)


@given(st.integers(0, 2**16), st.sampled_from(KEEPS))
def test_input_ridge_solution_is_the_expected_loss_minimizer(seed, keep):
    """A full-rank adapter placed at the weighted-ridge solution is a stationary point of E L."""
    X, Y, W, _, _ = _problem(seed, 2)  # d_in = d_out = r = 4
    R = Y - X @ W.T
    D = dt.input_dropout_ridge(X, R, keep)
    cfg = _cfg(4, keep, "input")  # s = 1
    U, S, Vt = jnp.linalg.svd(D)
    p = LoraParams(A=jnp.sqrt(S)[:, None] * Vt, B=U * jnp.sqrt(S)[None, :])
    assert rel_error(lora.delta(p, cfg), D) <= 10 * tol()
    g = dt.expected_loss_grad(W, p, X, Y, cfg)
    g0 = dt.expected_loss_grad(W, LoraParams(A=p.A, B=0 * p.B), X, Y, cfg)
    assert float(jnp.linalg.norm(g.B)) <= 100 * tol() * float(jnp.linalg.norm(g0.B))
    grad_ridge = jax.grad(dt.ridge_objective)(D, X, R, (1 - keep) / keep, jnp.sum(jnp.square(X), axis=0))
    assert float(jnp.linalg.norm(grad_ridge)) <= 100 * tol() * float(jnp.linalg.norm(R))


@given(st.integers(0, 2**16), st.sampled_from(KEEPS))
def test_output_ols_minimizer_is_q_times_ols(seed, keep):
    X, Y, W, _, _ = _problem(seed, 1)
    Wq = dt.output_ols_minimizer(X, Y, keep)
    grad = jax.grad(dt.output_ols_expected_loss)(Wq, X, Y, keep)
    grad0 = jax.grad(dt.output_ols_expected_loss)(jnp.zeros_like(Wq), X, Y, keep)
    assert float(jnp.linalg.norm(grad)) <= 100 * tol() * float(jnp.linalg.norm(grad0))
    vals = np.asarray(_mc(lambda k: dt.output_ols_sampled_loss(W, X, Y, keep, k), jax.random.key(seed)), np.float64)
    closed = float(dt.output_ols_expected_loss(W, X, Y, keep))
    assert abs(vals.mean() - closed) <= 5 * vals.std(ddof=1) / np.sqrt(len(vals)) + tol() * closed


@given(st.integers(0, 2**16), st.sampled_from(KEEPS), st.sampled_from([1.0, 7.0]))
def test_output_ols_equals_ridge_for_whitened_inputs(seed, keep, c):
    X, Y, _, _, _ = _problem(seed, 1)  # n = 16 >= d_in = 6
    Q, _ = jnp.linalg.qr(X)            # QᵀQ = I
    Xw = jnp.sqrt(c) * Q               # XᵀX = cI
    lam = dt.output_ols_ridge_lambda(Xw, keep, rtol=tol(f64=1e-10, f32=1e-5))
    assert rel_error(lam, c * (1 - keep) / keep) <= tol(f64=1e-10, f32=1e-5)
    assert rel_error(dt.ridge(Xw, Y, lam), dt.output_ols_minimizer(Xw, Y, keep)) <= tol(f64=1e-10, f32=1e-4)


def test_ridge_lambda_refuses_non_whitened_inputs():
    X, _, _, _, _ = _problem(0, 1)
    with pytest.raises(ValueError, match=r"^X: "):
        dt.output_ols_ridge_lambda(X, 0.8)


@pytest.mark.parametrize("site", ["input", "bottleneck", "output"])
def test_keep_one_reproduces_no_dropout_exactly(site):
    X, Y, W, p, r = _problem(3, 1)
    cfg = _cfg(r, 1.0, site, alpha=2.0)
    plain = models.loss(models.LinearLoRA(cfg), W, p, X, Y)
    assert float(dt.expected_loss(W, p, X, Y, cfg)) == float(plain)
    assert float(dt.sampled_loss(W, p, X, Y, cfg, jax.random.key(0))) == float(plain)
    assert float(dt.output_ols_expected_loss(W, X, Y, 1.0)) == pytest.approx(float(models.mse(X @ W.T, Y)), rel=tol())


def test_keep_one_expected_objective_trains_exactly_like_no_dropout():
    from toyllora.data import teacher_student

    t = teacher_student(seed=0, d_in=6, d_out=3, n_train=16, n_test=8, shift_rank=1)
    model = models.LinearLoRA(LoraConfig(rank=2, keep=1.0))
    a = Trainer(model, "sgd", steps=20, stride=10).run(t.W0, t.data, {"lr": 0.1}, seed=1)
    b = Trainer(model, "sgd", steps=20, stride=10, objective=dt.expected_objective).run(t.W0, t.data, {"lr": 0.1}, 1)
    np.testing.assert_array_equal(np.asarray(a.params.B), np.asarray(b.params.B))
    np.testing.assert_array_equal(np.asarray(a.metrics["test_loss"]), np.asarray(b.metrics["test_loss"]))


def test_expected_objective_lowers_the_expected_loss_in_a_trainer():
    from toyllora.data import teacher_student

    t = teacher_student(seed=1, d_in=6, d_out=3, n_train=16, n_test=8, shift_rank=1)
    model = models.LinearLoRA(LoraConfig(rank=2, alpha=2.0, keep=0.7, dropout_site="bottleneck"))
    h = Trainer(model, "adam", steps=100, stride=100, objective=dt.expected_objective).run(
        t.W0, t.data, {"lr": 0.05}, seed=0)
    W, p0 = model.init(jax.random.split(jax.random.key(0))[0], t.W0)
    e0 = dt.expected_loss(W, p0, t.data.X, t.data.Y, model.cfg)
    e1 = dt.expected_loss(h.frozen, h.params, t.data.X, t.data.Y, model.cfg)
    assert float(e1) < 0.5 * float(e0)


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5, float("nan"), "high"])
def test_bad_keep_raises(keep):
    X, Y, W, p, r = _problem(0, 0)
    with pytest.raises(ValueError, match=r"^keep: "):
        dt.expected_loss(W, p, X, Y, _cfg(r, 0.8, "input"), keep=keep)
    with pytest.raises(ValueError, match=r"^keep: "):
        dt.output_ols_expected_loss(W, X, Y, keep)
    with pytest.raises(ValueError, match=r"^keep: "):
        dt.input_dropout_ridge(X, Y, keep)


def test_empty_data_raises():
    X, Y, W, p, r = _problem(0, 0)
    with pytest.raises(ValueError, match=r"^X: "):
        dt.expected_loss(W, p, X[:0], Y[:0], _cfg(r, 0.8, "input"))
    with pytest.raises(ValueError, match=r"^X: "):
        dt.ols(X[:0], Y[:0])
    with pytest.raises(ValueError, match=r"^Y: "):
        dt.ridge(X, Y[:3], 1.0)


def test_rank_larger_than_the_layer_raises():
    X, Y, W, _, _ = _problem(0, 0)  # d_in = 5, d_out = 3
    p = LoraParams(A=jnp.ones((4, 5)), B=jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"^rank: "):
        dt.expected_loss(W, p, X, Y, _cfg(3, 0.8, "input"))


def test_bad_site_and_method_raise():
    X, Y, W, p, r = _problem(0, 0)
    with pytest.raises(ValueError, match=r"^dropout_site: "):
        dt.expected_loss(W, p, X, Y, _cfg(r, 0.8, "input"), site="hidden")
    with pytest.raises(ValueError, match=r"^cfg: "):
        dt.expected_loss(W, p, X, Y, LoraConfig(rank=r, method="allora", scaling="none", keep=0.8))
