"""Escape times, the exact two-factor gradient flow against GD, and the one-compile simulator's update rules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from toyllora import optim
from toyllora.theory import dynamics
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.models import LinearLoRA
from toyllora.testing import rel_error, tol
from toyllora.train import Trainer

STARTS = ["lora", "init_b", "balanced", "general"]


def _mode_start(start, a, b):
    return {"lora": (a, 0.0), "init_b": (0.0, a), "balanced": (a, a), "general": (a, b)}[start]


def _gd_vs_flow(sigma, a0, b0, s, lr, ratio):
    """Relative error of the GD curve against the flow over a horizon long enough to converge."""
    lr_a, lr_b = lr, lr * ratio
    steps = int(np.ceil(12.0 / (s * np.sqrt(lr_a * lr_b) * sigma)))
    gd = dynamics.mode_gd(steps, sigma, a0, b0, s=s, lr_a=lr_a, lr_b=lr_b)
    flow = dynamics.mode_flow(np.arange(steps + 1), sigma, a0, b0, s=s, lr_a=lr_a, lr_b=lr_b)
    return dynamics.relative_curve_error(gd, flow), flow[-1]


@given(start=st.sampled_from(STARTS), sigma=st.floats(0.5, 2.0), a=st.floats(0.2, 1.0), b=st.floats(-0.5, 0.5),
       s=st.sampled_from([0.5, 1.0, 2.0]), ratio=st.sampled_from([1.0, 4.0]))
def test_mode_flow_is_the_limit_of_gradient_descent(start, sigma, a, b, s, ratio):
    """GD with step lr is within O(lr) of the exact flow: halving lr halves the error (first order)."""
    a0, b0 = _mode_start(start, a, b)
    lr = 2e-3
    err1, end = _gd_vs_flow(sigma, a0, b0, s, lr, ratio)
    err2, _ = _gd_vs_flow(sigma, a0, b0, s, lr / 2, ratio)
    assert end == pytest.approx(sigma, rel=1e-3)          # the flow reaches the target
    assert err2 < 0.02
    assert 1.6 < err1 / err2 < 2.4                          # first-order convergence to the flow


def test_mode_flow_balanced_is_saxe_logistic():
    t = np.linspace(0, 2000, 11)
    u0, sigma, lr = 0.01, 1.5, 1e-2
    a0 = np.sqrt(u0)
    expected = sigma * u0 * np.exp(2 * sigma * lr * t) / (sigma - u0 + u0 * np.exp(2 * sigma * lr * t))
    np.testing.assert_allclose(dynamics.mode_flow(t, sigma, a0, a0, lr_a=lr, lr_b=lr), expected, rtol=1e-12)


def test_flow_conserves_what_gd_drifts_on():
    """a²/η_a − b²/η_b: GD's drift shrinks linearly with the step (the flow conserves it exactly)."""

    def drift(lr):
        a, b, lam0 = 0.5, 0.0, 0.25 / lr
        for _ in range(int(10 / lr)):
            e = a * b - 1.0
            a, b = a - lr * b * e, b - lr * a * e
        return abs((a * a - b * b) / lr - lam0) * lr / 0.25

    d1, d2 = drift(2e-2), drift(1e-2)
    assert d2 < d1 and 1.6 < d1 / d2 < 2.4


def test_escape_time_edge_cases():
    steps = np.array([0, 10, 20, 30])
    assert dynamics.escape_time(np.array([0.0, 0.2, 0.6, 0.9]), 0.5, steps) == 20.0
    assert dynamics.escape_time(np.array([0.0, 0.1, 0.2, 0.3]), 0.5, steps) == np.inf
    assert dynamics.escape_time(np.array([0.0, np.nan, np.inf, 0.7]), 0.5, steps) == 30.0
    assert dynamics.escape_time(np.array([1.0, 0.4, 0.1]), 0.5, above=False) == 1.0
    out = dynamics.escape_time(np.array([[0.0, 1.0], [0.0, 0.0]]), 0.5)
    np.testing.assert_array_equal(out, [1.0, np.inf])
    with pytest.raises(ValueError, match=r"^steps: "):
        dynamics.escape_time(np.zeros(3), 0.5, steps=np.arange(4))


def test_flow_progress_matches_simulated_gd_on_the_whitened_toy():
    """Matrix level: an aligned start on whitened data follows the product of the per-mode flows."""
    task = teacher_student(seed=1, d_in=6, d_out=4, n_train=32, n_test=8, shift_rank=2, spectrum=(1.0, 0.5),
                           whiten=True)
    A, B = dynamics.aligned_start(np.asarray(task.delta), 2, 0.5, 0.0)
    lr, steps = 0.01, 400
    tr = dynamics.simulate(task.data.X, task.data.Y, np.asarray(task.W0)[None], A[None], B[None],
                           dynamics.Rule(lr=lr), [0], steps=steps, stride=10)
    learned = np.einsum("tir,trj->tij", tr.B[0], tr.A[0])
    T = np.asarray(task.delta, np.float64)
    prog = np.einsum("tij,ij->t", learned, T) / np.sum(T * T)
    sig = np.linalg.svd(T, compute_uv=False)[:2]
    ana = dynamics.flow_progress(tr.steps, sig, 0.5, 0.0, lr_a=lr, lr_b=lr)
    assert dynamics.relative_curve_error(prog, ana) < 10 * lr  # Euler's O(lr) gap, float32 rounding far below


def _metrics(model, base, frozen, params, data):
    return {"zero": jnp.zeros(())}


def _scaled(hp):
    return optim.scaled_gd(hp["lr"], 1e-3)


@functools.lru_cache(maxsize=None)
def _task():
    return teacher_student(seed=0, d_in=6, d_out=4, n_train=16, n_test=8, shift_rank=2)


@pytest.mark.parametrize("cfg,opt,hps,rules", [
    (LoraConfig(rank=2, alpha=2.0), "sgd", {"lr": [0.1, 0.05], "b_ratio": [1.0, 4.0]},
     [dynamics.Rule(lr=0.1), dynamics.Rule(lr=0.05, b_ratio=4.0)]),
    (LoraConfig(rank=2, alpha=2.0), "adam", {"lr": [0.01, 0.01], "b_ratio": [1.0, 4.0]},
     [dynamics.Rule(lr=0.01, adam=1.0), dynamics.Rule(lr=0.01, adam=1.0, b_ratio=4.0)]),
    (LoraConfig(rank=2, alpha=2.0), _scaled, {"lr": [0.05]}, [dynamics.Rule(lr=0.05, scaled=1.0, delta=1e-3)]),
    (LoraConfig(rank=2, scaling="none", method="allora", eta=1.5), "sgd", {"lr": [0.1]},
     [dynamics.Rule(lr=0.1, allora=1.0, eta=1.5)]),
])
def test_simulate_rules_equal_the_reference_implementations(cfg, opt, hps, rules):
    """The simulator's LoRA, LoRA+, Adam, scaled GD and ALLoRA steps equal Trainer + optim + allora."""
    t, steps = _task(), 10
    hist = Trainer(LinearLoRA(cfg), opt, steps=steps, stride=steps, metrics=_metrics).sweep(
        t.W0, t.data, {k: np.asarray(v) for k, v in hps.items()}, seeds=[3])
    frozen, p0 = LinearLoRA(cfg).init(jax.random.split(jax.random.key(3))[0], t.W0)
    R = len(rules)
    stacked = dynamics.Rule(*(np.asarray([getattr(r, f) for r in rules]) for f in dynamics.Rule._fields))
    tr = dynamics.simulate(t.data.X, t.data.Y, np.repeat(np.asarray(frozen)[None], R, 0),
                           np.repeat(np.asarray(p0.A)[None], R, 0), np.repeat(np.asarray(p0.B)[None], R, 0),
                           stacked, [0] * R, steps=steps, stride=steps)
    for i in range(R):
        assert rel_error(tr.A[i, -1], hist.params.A[i, 0]) < tol(f32=1e-5, f64=1e-10)
        assert rel_error(tr.B[i, -1], hist.params.B[i, 0]) < tol(f32=1e-5, f64=1e-10)


_closed_grads = jax.jit(lambda A, B, X, Y, W, rule, key: dynamics._grads(A, B, X, Y, W, rule, key, 1.0))


@functools.partial(jax.jit, static_argnums=7)
def _reference_grads(A, B, X, Y, W, rule, key, which):
    return jax.grad(lambda a, b: dynamics.reference_losses(a, b, X, Y, W, rule, key)[which], argnums=(0, 1))(A, B)


@given(seed=st.integers(0, 2**31 - 1), keep=st.sampled_from([1.0, 0.7]), site=st.sampled_from([0.0, 1.0]),
       expected=st.sampled_from([0.0, 1.0]), use_allora=st.sampled_from([0.0, 1.0]))
def test_closed_form_step_gradients_equal_autodiff(seed, keep, site, expected, use_allora):
    rng = np.random.default_rng(seed)
    dt = jnp.zeros(()).dtype
    X, Y, W = (jnp.asarray(rng.standard_normal(s), dt) for s in ((12, 5), (12, 3), (3, 5)))
    A, B = jnp.asarray(rng.standard_normal((2, 5)), dt), jnp.asarray(rng.standard_normal((3, 2)), dt)
    rule = dynamics.Rule(*(jnp.asarray(v, dt) for v in
                           dynamics.Rule(lr=0.1, keep=keep, site=site, expected=expected, allora=use_allora)))
    key = jax.random.key(seed % 1000, impl="rbg")
    gA, gB = _closed_grads(A, B, X, Y, W, rule, key)
    rA, rB = _reference_grads(A, B, X, Y, W, rule, key, int(use_allora))
    assert rel_error(gA, rA) < tol(f32=1e-5, f64=1e-12)
    assert rel_error(gB, rB) < tol(f32=1e-5, f64=1e-12)


@pytest.mark.parametrize("site", [0.0, 1.0])
def test_expected_dropout_penalty_equals_monte_carlo(site):
    """E_masks[sampled loss] − clean loss = the closed-form penalty, within 4 standard errors."""
    rng = np.random.default_rng(7)
    dt = jnp.zeros(()).dtype
    X, Y, W = (jnp.asarray(rng.standard_normal(s), dt) for s in ((10, 4), (10, 3), (3, 4)))
    A, B = jnp.asarray(rng.standard_normal((2, 4)), dt), jnp.asarray(rng.standard_normal((3, 2)), dt)
    sampled = dynamics.Rule(*(jnp.asarray(v, dt) for v in dynamics.Rule(lr=0.0, keep=0.6, site=site)))
    clean = dynamics.Rule(*(jnp.asarray(v, dt) for v in dynamics.Rule(lr=0.0)))
    N = 4000
    keys = jax.vmap(lambda k: jax.random.key(k, impl="rbg"))(jnp.arange(N, dtype=jnp.uint32))
    many = jax.jit(jax.vmap(lambda k: dynamics.reference_losses(A, B, X, Y, W, sampled, k)[0]))
    losses = np.asarray(many(keys), np.float64)
    base = float(dynamics.reference_losses(A, B, X, Y, W, clean, keys[0])[0])
    pen = float(dynamics.expected_dropout_penalty(X, A, B, 0.6, site))
    se = losses.std(ddof=1) / np.sqrt(N)
    assert abs(losses.mean() - base - pen) < 4 * se + tol(f32=1e-5, f64=1e-12) * abs(base + pen)


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match=r"^lr_a, lr_b: "):
        dynamics.mode_flow(1.0, 1.0, 0.5, 0.0, lr_a=0.0)
    with pytest.raises(ValueError, match=r"^rank: "):
        dynamics.aligned_start(np.ones((2, 3)), 3, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"^stride: "):
        dynamics.simulate(jnp.ones((4, 3)), jnp.ones((4, 2)), np.ones((1, 2, 3)), np.ones((1, 1, 3)),
                          np.zeros((1, 2, 1)), dynamics.Rule(lr=0.1), [0], steps=10, stride=3)


def test_simulate_with_per_run_data_equals_shared_data():
    t = _task()
    frozen, p0 = LinearLoRA(LoraConfig(rank=2, alpha=2.0)).init(jax.random.key(1), t.W0)
    W, A, B = (np.repeat(np.asarray(a)[None], 3, 0) for a in (frozen, p0.A, p0.B))
    rules = dynamics.Rule(lr=np.array([0.1, 0.05, 0.01]), adam=np.array([0.0, 0.0, 1.0]))
    shared = dynamics.simulate(t.data.X, t.data.Y, W, A, B, rules, [0, 1, 2], steps=10, stride=5)
    X, Y = (np.repeat(np.asarray(a)[None], 3, 0) for a in (t.data.X, t.data.Y))
    per_run = dynamics.simulate(X, Y, W, A, B, rules, [0, 1, 2], steps=10, stride=5)
    np.testing.assert_allclose(per_run.A, shared.A, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(per_run.B, shared.B, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match=r"^X, Y: per-run data"):
        dynamics.simulate(X[:2], Y[:2], W, A, B, rules, [0, 1, 2], steps=10, stride=5)


def test_escape_time_interpolates_and_takes_a_threshold_per_trajectory():
    steps = np.array([0, 10, 20, 30])
    v = np.array([[0.0, 0.2, 0.6, 0.9], [0.0, 0.0, 0.1, 0.3]])
    np.testing.assert_allclose(dynamics.escape_time(v, 0.5, steps, interpolate=True), [17.5, np.inf])
    np.testing.assert_allclose(dynamics.escape_time(v, np.array([0.5, 0.2]), steps, interpolate=True), [17.5, 25.0])
    assert dynamics.escape_time(np.array([0.7, 0.9]), 0.5, interpolate=True) == 0.0   # already there at record 0


def _flow_run(rule, steps, A0, B0, t):
    tr = dynamics.simulate(t.data.X, t.data.Y, np.asarray(t.W0)[None], A0[None], B0[None], rule, [0], steps=steps,
                           stride=steps)
    return tr.A[0], tr.B[0]


@pytest.mark.parametrize("kind", ["lora", "loraplus", "allora"])
def test_each_rule_keeps_its_own_invariant_up_to_a_drift_proportional_to_lr(kind):
    """LoRA and ALLoRA (SGD) keep AAᵀ − BᵀB, LoRA+ keeps AAᵀ/η_A − BᵀB/η_B: halving the step at the same flow
    time halves the violation (first order), while the plain AAᵀ − BᵀB is broken by LoRA+ at O(1)."""
    t = _task()
    _, p0 = LinearLoRA(LoraConfig(rank=2, alpha=2.0)).init(jax.random.key(2), t.W0)
    A0, B0 = np.asarray(p0.A), np.asarray(p0.B)

    def violation(lr):
        rule = {"lora": dynamics.Rule(lr=lr), "loraplus": dynamics.Rule(lr=lr, b_ratio=4.0),
                "allora": dynamics.Rule(lr=lr, allora=1.0)}[kind]
        A, B = _flow_run(rule, int(round(4.0 / lr)), A0, B0, t)
        lr_b = 4.0 if kind == "loraplus" else 1.0
        own = dynamics.conservation_violation(A[None], B[None], lr_b=lr_b)[0, -1]
        return own, dynamics.conservation_violation(A[None], B[None])[0, -1]

    (v1, q1), (v2, _) = violation(0.04), violation(0.02)
    assert v1 < 0.05 and 1.5 < v1 / v2 < 2.6
    assert (q1 > 0.3) == (kind == "loraplus")


def test_scaled_gd_flow_keeps_its_log_det_invariant():
    """Scaled GD's flow keeps log det(AAᵀ+δ) − log det(BᵀB+δ) (not AAᵀ − BᵀB): from a start away from B = 0
    the violation of that invariant halves with the step."""
    t = _task()
    rng = np.random.default_rng(0)
    A0, B0 = rng.standard_normal((2, 6)) * 0.5, rng.standard_normal((4, 2)) * 0.5

    def violation(lr):
        A, B = _flow_run(dynamics.Rule(lr=lr, scaled=1.0, delta=1e-2), int(round(2.0 / lr)), A0, B0, t)
        return (dynamics.conservation_violation(A[None], B[None], scaled_delta=1e-2)[0, -1],
                dynamics.conservation_violation(A[None], B[None])[0, -1])

    (v1, q1), (v2, _) = violation(0.02), violation(0.01)
    assert v1 < 0.05 and 1.5 < v1 / v2 < 2.6 and q1 > 10 * v1


def test_balance_invariants_by_hand():
    A, B = np.array([[3.0, 4.0]]), np.array([[1.0], [2.0]])
    np.testing.assert_allclose(dynamics.balance_matrix(A, B), [[25.0 - 5.0]])
    np.testing.assert_allclose(dynamics.balance_matrix(A, B, lr_a=5.0, lr_b=0.5), [[5.0 - 10.0]])
    np.testing.assert_allclose(dynamics.scaled_gd_invariant(A, B, 0.0), np.log(25.0 / 5.0))


def test_dropout_fixed_point_minimizes_the_expected_loss():
    """Input: q·σ; bottleneck: the minimizer of ½Σ(m − σ)² + (λ/2r)(Σm)² over m >= 0 (a brute-force grid)."""
    sig = np.array([1.0, 0.3])
    for keep in (0.9, 0.6, 0.3):
        np.testing.assert_allclose(dynamics.dropout_fixed_point(sig, keep, "input", 2), keep * sig)
        lam = (1 - keep) / keep
        g = np.linspace(0, 1, 1001)
        m1, m2 = np.meshgrid(g, g, indexing="ij")
        f = 0.5 * ((m1 - sig[0]) ** 2 + (m2 - sig[1]) ** 2) + lam / 4 * (m1 + m2) ** 2
        i, j = np.unravel_index(np.argmin(f), f.shape)
        np.testing.assert_allclose(dynamics.dropout_fixed_point(sig, keep, "bottleneck", 2), [g[i], g[j]], atol=2e-3)
    assert dynamics.fixed_point_progress([1.0, 0.5], 0.6, "bottleneck", 2) == pytest.approx(0.64)


@pytest.mark.xla_optimized   # execution-bound: thousands of steps in one scan
def test_expected_dropout_gd_converges_to_the_fixed_point():
    """On the whitened toy, GD on the expected-dropout loss ends at the learned fraction p*(q)."""
    task = teacher_student(seed=1, d_in=6, d_out=4, n_train=32, n_test=8, shift_rank=2, spectrum=(1.0, 0.5),
                           whiten=True)
    _, p0 = LinearLoRA(LoraConfig(rank=2, alpha=2.0)).init(jax.random.key(0), task.W0)
    T = np.asarray(task.delta, np.float64)
    for site, code in (("input", 0.0), ("bottleneck", 1.0)):
        A, B = _flow_run(dynamics.Rule(lr=0.1, keep=0.6, site=code, expected=1.0), 2000, np.asarray(p0.A),
                         np.asarray(p0.B), task)
        prog = float(np.sum((B[-1] @ A[-1]) * T) / np.sum(T * T))
        assert prog == pytest.approx(dynamics.fixed_point_progress([1.0, 0.5], 0.6, site, 2), abs=2e-3)


def test_allora_update_at_zero_is_eta_times_lora():
    """At BA = 0 ALLoRA's factor is c = eta for every row: its update is eta × LoRA's gradient, and c <= eta
    everywhere (no row ever moves faster than LoRA at eta·l_b)."""
    t = _task()
    _, p0 = LinearLoRA(LoraConfig(rank=2, alpha=2.0)).init(jax.random.key(0), t.W0)
    args = (np.asarray(p0.A), np.asarray(p0.B), t.data.X, t.data.Y, np.asarray(t.W0))
    gA, gB = dynamics.gradients(*args, dynamics.Rule(lr=1.0, allora=1.0, eta=1.5))
    lA, lB = dynamics.gradients(*args, dynamics.Rule(lr=1.0))
    assert np.all(gA == 0) and np.all(lA == 0)
    np.testing.assert_allclose(gB, 1.5 * lB, rtol=tol(f32=1e-6, f64=1e-14))
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2, 6)), rng.standard_normal((4, 2))
    c = 1.0 / np.sqrt(np.linalg.norm(B @ A, axis=1) + 1.0 / 1.5 ** 2)
    assert np.all(c <= 1.5)


def test_adam_cancels_a_constant_gradient_factor():
    """Adam's update of c·g equals its update of g (up to eps): ALLoRA's c = eta at BA = 0 cancels under Adam."""
    t = _task()
    _, p0 = LinearLoRA(LoraConfig(rank=2, alpha=2.0)).init(jax.random.key(0), t.W0)
    A0, B0 = np.asarray(p0.A), np.asarray(p0.B)
    a, b = _flow_run(dynamics.Rule(lr=0.01, adam=1.0, allora=1.0, eta=2.0), 1, A0, B0, t)
    la, lb = _flow_run(dynamics.Rule(lr=0.01, adam=1.0), 1, A0, B0, t)
    np.testing.assert_allclose(b[-1], lb[-1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a[-1], la[-1], rtol=1e-5, atol=1e-7)
