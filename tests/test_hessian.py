"""The exact Hessian of the LoRA loss: autodiff against the closed form, the spectrum and inertia at B = 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from toyllora.theory import hessian
from toyllora.testing import float_dtype, tol

# (d_in, d_out, r) buckets: few shapes, few compiles (n is padded inside hessian(), so it never recompiles).
SHAPES = [(3, 2, 1), (4, 3, 2), (5, 6, 2), (6, 4, 3)]
NS = [2, 3, 5, 8, 12]


def _problem(seed, shape, n, *, resid_rank=None, zero_b=False, a_rank=None):
    d_in, d_out, r = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in))
    k = min(n, d_out) if resid_rank is None else resid_rank
    T = rng.standard_normal((n, k)) @ rng.standard_normal((k, d_out))
    A = rng.standard_normal((r, d_in)) / np.sqrt(d_in)
    if a_rank is not None and a_rank < r:
        A = rng.standard_normal((r, a_rank)) @ A[:a_rank]
    B = np.zeros((d_out, r)) if zero_b else rng.standard_normal((d_out, r)) / np.sqrt(r)
    dt = float_dtype()
    return (np.asarray(v, dtype=dt) for v in (X, T, A, B))


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES), n=st.sampled_from(NS),
       zero_b=st.booleans(), s=st.sampled_from([0.5, 1.0, 2.0]), reduction=st.sampled_from(["mean", "sum"]))
def test_autodiff_hessian_equals_closed_form_blocks(seed, shape, n, zero_b, s, reduction):
    X, T, A, B = _problem(seed, shape, n, zero_b=zero_b)
    H = np.asarray(hessian.hessian(A, B, X, T, s=s, reduction=reduction), dtype=np.float64)
    Hc = np.asarray(hessian.assemble(hessian.factor_blocks(A, B, X, T, s=s, reduction=reduction)), np.float64)
    np.testing.assert_allclose(H, H.T, atol=tol(f32=1e-5, f64=1e-13) * np.abs(H).max())
    assert np.abs(H - Hc).max() <= tol(f32=1e-4, f64=1e-10) * np.abs(H).max()


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES), n=st.sampled_from(NS),
       keep=st.sampled_from([1.0, 0.8, 0.5]), site=st.sampled_from(["input", "bottleneck", "output"]),
       s=st.sampled_from([0.5, 1.0, 2.0]), reduction=st.sampled_from(["mean", "sum"]))
def test_spectrum_at_zero_equals_autodiff_eigenvalues(seed, shape, n, keep, site, s, reduction):
    X, T, A, _ = _problem(seed, shape, n)
    B = np.zeros((shape[1], shape[2]), dtype=A.dtype)
    H = np.asarray(hessian.hessian(A, B, X, T, s=s, reduction=reduction, keep=keep, site=site), np.float64)
    ev = np.linalg.eigvalsh(H)
    closed = hessian.spectrum_at_zero(A, X, T, s=s, reduction=reduction, keep=keep, site=site)
    assert np.abs(ev - closed).max() <= tol(f32=1e-4, f64=1e-10) * np.abs(ev).max()


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES), n=st.sampled_from(NS),
       resid_rank=st.integers(0, 3), a_rank=st.integers(1, 3))
def test_inertia_formula_on_random_shapes(seed, shape, n, resid_rank, a_rank):
    """Counts of negative/zero/positive eigenvalues at B = 0 equal predicted_inertia of the ranks."""
    d_in, d_out, r = shape
    X, T, A, _ = _problem(seed, shape, n, resid_rank=min(resid_rank, d_out), a_rank=min(a_rank, r))
    if resid_rank == 0:
        T = np.zeros_like(T)
    closed = hessian.spectrum_at_zero(A, X, T)
    scale = np.abs(closed).max()
    assume(scale > 0)
    rtol = hessian.default_rtol()
    nonzero = np.abs(closed)[np.abs(closed) > 1e-12 * scale]
    assume(nonzero.size == 0 or nonzero.min() > 1e3 * rtol * scale)  # no eigenvalue near the zero threshold
    H = np.asarray(hessian.hessian(A, np.zeros((d_out, r), A.dtype), X, T), np.float64)
    rho = hessian.numerical_rank(np.asarray(X, np.float64).T @ np.asarray(T, np.float64), 1e-6)
    m = hessian.numerical_rank(np.asarray(X, np.float64) @ np.asarray(A, np.float64).T, 1e-6)
    assert hessian.inertia(np.linalg.eigvalsh(H), rtol) == hessian.predicted_inertia(
        d_in=d_in, d_out=d_out, rank=r, rank_g=rho, rank_m=m)


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES), resid_rank=st.integers(1, 3))
def test_inertia_formula_init_b(seed, shape, resid_rank):
    d_in, d_out, r = shape
    X, T, _, B = _problem(seed, shape, 12, resid_rank=min(resid_rank, d_out))
    A = np.zeros((r, d_in), X.dtype)
    H = np.asarray(hessian.hessian(A, B, X, T), np.float64)
    ev = np.linalg.eigvalsh(H)
    nz = np.abs(ev)[np.abs(ev) > 1e-3 * np.abs(ev).max()]
    assume(nz.min() > 1e3 * hessian.default_rtol() * np.abs(ev).max())
    rho = hessian.numerical_rank(np.asarray(X, np.float64).T @ np.asarray(T, np.float64), 1e-6)
    assert hessian.inertia(ev) == hessian.predicted_inertia(d_in=d_in, d_out=d_out, rank=r, rank_g=rho,
                                                            rank_m=r, init="init_b")


def test_mean_and_sum_differ_by_n_only():
    """Summing instead of averaging multiplies H by n: same inertia, same condition number."""
    X, T, A, _ = _problem(0, (5, 6, 2), 8)
    B = np.zeros((6, 2), A.dtype)
    Hm = np.asarray(hessian.hessian(A, B, X, T, reduction="mean"), np.float64)
    Hs = np.asarray(hessian.hessian(A, B, X, T, reduction="sum"), np.float64)
    assert np.abs(Hs - 8 * Hm).max() <= tol() * np.abs(Hs).max()
    em, es = np.linalg.eigvalsh(Hm), np.linalg.eigvalsh(Hs)
    assert hessian.inertia(em) == hessian.inertia(es)
    assert hessian.condition_number(es) == pytest.approx(hessian.condition_number(em), rel=1e-3)


def test_too_large_request_raises_with_the_limit():
    A, B = np.zeros((40, 30)), np.zeros((30, 40))
    with pytest.raises(ValueError, match=r"^max_params: .*<= 2048"):
        hessian.hessian(A, B, np.zeros((3, 30)), np.zeros((3, 30)))
    with pytest.raises(ValueError, match=r"^max_params: .*<= 10"):
        hessian.hessian(np.zeros((1, 8)), np.zeros((4, 1)), np.zeros((3, 8)), np.zeros((3, 4)), max_params=10)


def test_bad_input_names_the_field():
    X, T, A, B = _problem(0, (3, 2, 1), 4)
    with pytest.raises(ValueError, match=r"^reduction: .*'mean', 'sum'"):
        hessian.hessian(A, B, X, T, reduction="avg")
    with pytest.raises(ValueError, match=r"^site: "):
        hessian.hessian(A, B, X, T, keep=0.5, site="hidden")
    with pytest.raises(ValueError, match=r"^keep: "):
        hessian.hessian(A, B, X, T, keep=0.0)
    with pytest.raises(ValueError, match=r"^A, B, X, T: "):
        hessian.hessian(A, B, X, T[:, :1])
    with pytest.raises(ValueError, match=r"^init: "):
        hessian.predicted_inertia(d_in=3, d_out=2, rank=1, rank_g=1, rank_m=1, init="pissa")


def test_inertia_and_condition_number_by_hand():
    ev = np.array([-3.0, -1e-20, 0.0, 1.0, 6.0])
    assert hessian.inertia(ev, rtol=1e-9) == (1, 2, 2)
    assert hessian.condition_number(ev, rtol=1e-9) == 6.0
    assert hessian.condition_number(np.zeros(3), rtol=1e-9) == float("inf")
    assert hessian.numerical_rank(np.diag([1.0, 1e-12, 0.0])) == 1


ROW_SHAPES = [(3, 2, 1), (4, 3, 2), (5, 6, 2)]


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(ROW_SHAPES), n=st.sampled_from([2, 5, 9]),
       keep=st.sampled_from([1.0, 0.7]), site=st.sampled_from(["input", "bottleneck", "output"]),
       s=st.sampled_from([0.5, 1.0, 2.0]), reduction=st.sampled_from(["mean", "sum"]), zero_b=st.booleans())
def test_hessian64_equals_autodiff(seed, shape, n, keep, site, s, reduction, zero_b):
    """The NumPy float64 closed form equals jax.hessian (in JAX's dtype) at any point, with dropout."""
    X, T, A, B = _problem(seed, shape, n, zero_b=zero_b)
    H = np.asarray(hessian.hessian(A, B, X, T, s=s, reduction=reduction, keep=keep, site=site), np.float64)
    H64 = hessian.hessian64(A, B, X, T, s=s, reduction=reduction, keep=keep, site=site)
    assert H64.dtype == np.float64
    assert np.abs(H - H64).max() <= tol(f32=2e-5, f64=1e-11) * np.abs(H64).max()


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(ROW_SHAPES), n=st.sampled_from([3, 8]))
def test_hessian64_row_weights_is_the_jacobian_of_allora_frozen_field(seed, shape, n):
    """With w = c (ALLoRA's factor held at its value) the weighted Hessian is the Jacobian of ALLoRA's update
    field (Bᵀ C G, C G Aᵀ) — the gradient of the row-weighted loss."""
    X, T, A, B = _problem(seed, shape, n)
    d_in, d_out, r = shape
    c = np.asarray(np.random.default_rng(seed).uniform(0.5, 2.0, d_out), X.dtype)

    def field(theta):
        a, b = hessian.unflatten(theta, r, d_in, d_out)
        G = (c[:, None] * (X @ a.T @ b.T - T).T @ X) / n
        return hessian.flatten(b.T @ G, G @ a.T)

    J = np.asarray(jax.jacfwd(field)(hessian.flatten(jnp.asarray(A), jnp.asarray(B))), np.float64)
    H64 = hessian.hessian64(A, B, X, T, row_weights=c)
    assert np.abs(J - H64).max() <= tol(f32=2e-5, f64=1e-11) * np.abs(H64).max()
    np.testing.assert_allclose(hessian.hessian64(A, B, X, T, row_weights=np.full(d_out, 2.0)),
                               2.0 * hessian.hessian64(A, B, X, T), rtol=1e-12, atol=1e-14)


def test_full_ft_spectrum_equals_autodiff():
    X, T, _, _ = _problem(1, (5, 3, 1), 4)
    H = jax.hessian(lambda w: 0.5 * jnp.sum(jnp.square(X @ w.reshape(3, 5).T - T)) / 4)(jnp.zeros(15, X.dtype))
    ev = np.linalg.eigvalsh(np.asarray(H, np.float64))
    closed = hessian.full_ft_spectrum(X, 3)
    assert np.abs(ev - closed).max() <= tol(f32=1e-5, f64=1e-12) * np.abs(ev).max()
    assert hessian.spectrum_summary(closed, 1e-12)["zero"] == 3 * (5 - 4)


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES), n=st.sampled_from([1, 2, 3]),
       zero_b=st.booleans())
def test_null_space_of_X_gives_zero_eigenvalues_at_any_point(seed, shape, n, zero_b):
    """Without dropout L depends on A only through XAᵀ, so every dA with X dAᵀ = 0 is flat: at every point —
    zero init or not — the Hessian has at least r·(d_in − rank X) zero eigenvalues (float64 closed form)."""
    d_in, d_out, r = shape
    assume(n < d_in)
    X, T, A, B = (np.asarray(v, np.float64) for v in _problem(seed, shape, n, zero_b=zero_b))
    ev = np.linalg.eigvalsh(hessian.hessian64(A, B, X, T))
    assert hessian.inertia(ev, 1e-11)[1] >= r * (d_in - n)


def test_spectrum_summary_reports_the_resolution():
    sm = hessian.spectrum_summary(np.array([-2.0, 1e-17, 0.0, 1e-6, 3.0]), rtol=1e-12)
    assert (sm["negative"], sm["zero"], sm["positive"]) == (1, 2, 2)
    assert sm["condition"] == pytest.approx(3e6)
    assert sm["zero_gap"] == pytest.approx(1e-6 / 3 / (1e-17 / 3))
    assert hessian.spectrum_summary(np.array([1.0, 2.0]))["zero_gap"] == float("inf")
