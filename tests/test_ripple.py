"""Flaw 3 (the ripple): the multilinear forward, every step of the bound chain, the tight construction,
normalization, and the coupling measure — each checked against autodiff or a direct computation on random
shapes (hypothesis; sizes from a few buckets to limit recompiles)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toyllora import models
from toyllora.data import deep_teacher
from toyllora.theory import ripple
from toyllora.testing import rel_error, tol

SEEDS = st.integers(0, 2**31 - 1)
DEPTHS = st.sampled_from([1, 4])
WIDTHS = st.sampled_from([4, 6])
RANKS = st.sampled_from([1, 2])
SCALES = st.sampled_from([-2.0, 0.5, 1.0, 4.0])
POS_SCALES = st.sampled_from([0.25, 1.0, 3.0])
RATIOS = st.floats(0.01, 1.0)

_chain = jax.jit(ripple.bound_chain)
_prefix = jax.jit(ripple.forward_prefixes, static_argnames=("norm", "eps"))
_blocks = jax.jit(ripple.layer_blocks, static_argnames="norm")
CHAIN_TOL = tol(f32=2e-4, f64=1e-9)


def _static_model(fn):
    """jit with the (hashable) model as a static argument: one compile per model and shape."""
    return jax.jit(fn, static_argnums=0)


_model_apply = _static_model(lambda model, frozen, params, X: model.apply(frozen, params, X))
_model_hessian = _static_model(lambda model, frozen, params, X, Y: jax.hessian(
    lambda p: models.loss(model, frozen, p, X, Y))(params))


def _ordered(small, large, rtol=CHAIN_TOL):
    small, large = np.asarray(small, np.float64), np.asarray(large, np.float64)
    assert np.all(small <= large * (1 + rtol) + 1e-30), (small, large)


# -- the network ---------------------------------------------------------------------------------------
@settings(max_examples=6)
@given(seed=SEEDS, L=DEPTHS, d=WIDTHS, r=RANKS, s=SCALES, norm=st.sampled_from([None, "rms", "layer"]))
def test_forward_matches_multilinear_model(seed, L, d, r, s, norm):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, 0.3)
    X = jax.random.normal(jax.random.key(seed), (5, d), Ws.dtype)
    model, frozen, params = ripple.as_model(Ws, As, Bs, s, norm)
    want = _model_apply(model, frozen, params, X)
    assert rel_error(_prefix(Ws, As, Bs, X, s, norm)[-1], want) < tol(f32=1e-5, f64=1e-12)
    # merged weights agree with lora.merge as well
    assert rel_error(ripple.merged(Ws, As, Bs, s), jnp.stack(model.weights(frozen, params))) < tol()


@given(seed=SEEDS, L=DEPTHS, d=WIDTHS, r=RANKS, s=SCALES)
def test_prefix_products_give_every_depth(seed, L, d, r, s):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, 0.3)
    X = jax.random.normal(jax.random.key(seed), (3, d), Ws.dtype)
    P = ripple.prefix_products(ripple.merged(Ws, As, Bs, s))
    outs = _prefix(Ws, As, Bs, X, s, None)
    for l in range(L):
        assert rel_error(X @ P[l].T, outs[l]) < tol(f32=1e-5, f64=1e-12)


# -- the chain of bounds -------------------------------------------------------------------------------
@given(seed=SEEDS, L=DEPTHS, d=WIDTHS, r=RANKS, s=SCALES, ratio=RATIOS)
def test_upper_chain_holds_on_random_networks(seed, L, d, r, s, ratio):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, ratio)
    X = jax.random.normal(jax.random.key(seed), (16, d), Ws.dtype)
    c = _chain(Ws, As, Bs, s, X)
    # every single input obeys the worst case
    P = ripple.prefix_products(ripple.merged(Ws, As, Bs, s))
    per_x = np.linalg.norm(np.einsum("lij,nj->lni", P, X), axis=-1) / np.linalg.norm(np.asarray(X), axis=-1)
    _ordered(per_x.max(axis=1), c["realized_worst"])
    _ordered(c["realized_x"], c["realized_worst"])
    _ordered(c["realized_worst"], c["merged_product"])
    _ordered(c["merged_product"], c["triangle"])
    _ordered(c["triangle"], c["amgm"])


@given(seed=SEEDS, L=DEPTHS, s=st.floats(-5.0, 5.0))
def test_amgm_step_with_mean_of_ratios(seed, L, s):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 3.0, L)
    b = rng.uniform(0.0, 3.0, L)
    lhs = np.prod(w + abs(s) * b)
    rhs = np.prod(w) * (1 + abs(s) * np.mean(b / w)) ** L
    assert lhs <= rhs * (1 + 1e-12)
    # equality when all ratios are equal
    b_eq = w * np.mean(b / w)
    assert np.isclose(np.prod(w + abs(s) * b_eq), rhs, rtol=1e-12)


def test_ratio_of_means_is_not_a_bound():
    # layer 1 small and strongly adapted, layer 2 large and not adapted: mean ||BA|| / mean ||W|| is tiny
    Ws = jnp.stack([jnp.eye(2) * 0.1, jnp.eye(2) * 10.0])
    As = jnp.stack([jnp.array([[1.0, 0.0]]), jnp.zeros((1, 2))])
    Bs = jnp.stack([jnp.array([[1.0], [0.0]]), jnp.zeros((2, 1))])
    c = ripple.bound_chain(Ws, As, Bs, 1.0)
    wrong = float(ripple.ratio_of_means_bound(Ws, As, Bs, 1.0))
    assert float(c["realized_worst"][-1]) > 1.5 * wrong
    assert float(c["realized_worst"][-1]) <= float(c["amgm"][-1]) * (1 + CHAIN_TOL)


@given(seed=SEEDS, L=DEPTHS, d=WIDTHS, r=RANKS, s=SCALES, ratio=RATIOS)
def test_lower_bounds_hold(seed, L, d, r, s, ratio):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, ratio)
    X = jax.random.normal(jax.random.key(seed), (16, d), Ws.dtype)
    c = _chain(Ws, As, Bs, s, X)
    P = ripple.prefix_products(ripple.merged(Ws, As, Bs, s))
    per_x = np.linalg.norm(np.einsum("lij,nj->lni", P, X), axis=-1) / np.linalg.norm(np.asarray(X), axis=-1)
    scale = float(np.max(c["C"]))  # absolute slack: singular values carry an error ~ eps * ||M||
    assert np.all(np.asarray(c["lower"]) <= per_x.min(axis=1) * (1 + CHAIN_TOL) + CHAIN_TOL * scale)
    assert np.all(np.asarray(c["lower_triangle"]) <= np.asarray(c["lower"]) * (1 + CHAIN_TOL) + CHAIN_TOL * scale)


@given(seed=SEEDS, L=DEPTHS, d=WIDTHS, r=RANKS, s=SCALES, ratio=RATIOS)
def test_output_change_chain_holds(seed, L, d, r, s, ratio):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, ratio)
    c = _chain(Ws, As, Bs, s)
    _ordered(c["change_worst"], c["change_triangle"] + CHAIN_TOL * c["C"])
    _ordered(c["change_triangle"], c["change_amgm"] + CHAIN_TOL * c["C"])


# -- the tight case --------------------------------------------------------------------------------------
@given(seed=SEEDS, L=DEPTHS, d=WIDTHS, r=RANKS, s=POS_SCALES, ratio=RATIOS)
def test_aligned_adapter_attains_the_triangle_step(seed, L, d, r, s, ratio):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, ratio)   # any base: one layer at a time
    A, B = ripple.aligned_adapters(Ws, r, ratio)
    nW = ripple.spectral_norm(Ws)
    nBA = ripple.spectral_norm(jnp.asarray(B @ A, Ws.dtype))
    assert rel_error(nBA, ratio * nW) < tol(f32=1e-5, f64=1e-12)
    nM = ripple.spectral_norm(Ws + s * jnp.asarray(B @ A, Ws.dtype))
    assert rel_error(nM, nW + s * nBA) < tol(f32=1e-5, f64=1e-12)


@given(seed=SEEDS, L=DEPTHS, d=WIDTHS, r=RANKS, s=POS_SCALES, ratio=RATIOS)
def test_aligned_chained_network_attains_the_whole_chain(seed, L, d, r, s, ratio):
    Ws, As, Bs = ripple.network(seed, "aligned", L, d, r, ratio)
    c = _chain(Ws, As, Bs, s)
    t = tol(f32=1e-4, f64=1e-10)
    assert rel_error(c["realized_worst"], c["amgm"]) < t
    assert rel_error(c["triangle"], c["amgm"]) < t
    assert rel_error(c["change_worst"], c["change_amgm"]) < 10 * t
    # the worst-case input is W_1's top right singular vector
    x = ripple.top_input(Ws)
    out = _prefix(Ws, As, Bs, x[None, :], s, None)[:, 0]
    assert rel_error(jnp.linalg.norm(out, axis=-1), c["amgm"]) < t


@given(seed=SEEDS, L=st.sampled_from([3, 4]), d=WIDTHS, r=RANKS, s=POS_SCALES)
def test_aligned_with_unequal_ratios_attains_triangle_not_amgm(seed, L, d, r, s):
    rng = np.random.default_rng(seed)
    Ws = ripple._as_jax(ripple.chained_base(rng, L, d))
    ratios = np.linspace(0.05, 1.0, L)
    As, Bs = ripple._as_jax(*ripple.aligned_adapters(Ws, r, ratios))
    c = _chain(Ws, As, Bs, s)
    assert rel_error(c["realized_worst"][-1], c["triangle"][-1]) < tol(f32=1e-4, f64=1e-10)
    assert float(c["amgm"][-1]) > float(c["triangle"][-1]) * (1 + 1e-3)   # AM-GM strict for unequal ratios


def test_growth_rate_of_a_geometric_sequence():
    assert abs(ripple.growth_rate(3.0 * 1.7 ** np.arange(1, 9)) - 1.7) < 1e-12


# -- normalization ---------------------------------------------------------------------------------------
@given(seed=SEEDS, d=WIDTHS, c=st.floats(1e-2, 1e2), norm=st.sampled_from(["rms", "layer"]))
def test_normalization_is_scale_invariant(seed, d, c, norm):
    h = jax.random.normal(jax.random.key(seed), (7, d))
    eps = 1e-6   # models.normalize's eps breaks exact invariance by at most ~eps (1 + 1/c²) / (2 mean(h²))
    centred = h - h.mean(-1, keepdims=True) if norm == "layer" else h
    ms = float(jnp.min(jnp.mean(jnp.square(centred), axis=-1)))
    t = tol(f32=1e-5, f64=1e-12) + eps * (1 + 1 / c**2) / ms
    assert rel_error(models.normalize(c * h, norm), models.normalize(h, norm)) < t


@settings(max_examples=6)
@given(seed=SEEDS, L=st.sampled_from([3]), d=WIDTHS, r=RANKS, s=SCALES, c=st.floats(0.1, 10.0),
       norm=st.sampled_from(["rms", "layer"]))
def test_normalized_output_ignores_the_scale_of_lower_layers(seed, L, d, r, s, c, norm):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, 0.3)
    X = jax.random.normal(jax.random.key(seed), (5, d), Ws.dtype)
    scaled = Ws.at[: L - 1].multiply(c)
    As_c = As.at[: L - 1].multiply(np.sqrt(c))
    Bs_c = Bs.at[: L - 1].multiply(np.sqrt(c))   # every lower layer M_l -> c M_l
    # exact with eps = 0 (the eps inside the norm only adds a perturbation ~eps / mean(h²))
    out = _prefix(Ws, As, Bs, X, s, norm, eps=0.0)[-1]
    out_c = _prefix(scaled, As_c, Bs_c, X, s, norm, eps=0.0)[-1]
    assert rel_error(out_c, out) < tol(f32=1e-4, f64=1e-10)


@given(seed=SEEDS, L=st.sampled_from([3, 4]), d=WIDTHS, r=RANKS, s=SCALES, norm=st.sampled_from(["rms", "layer"]))
def test_normalized_output_is_bounded_by_the_last_layer(seed, L, d, r, s, norm):
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, 0.5)
    X = 100.0 * jax.random.normal(jax.random.key(seed), (9, d), Ws.dtype)
    outs = _prefix(Ws, As, Bs, X, s, norm)
    nM = np.asarray(ripple.spectral_norm(ripple.merged(Ws, As, Bs, s)))
    bound = np.sqrt(d) * nM[1:, None]
    assert np.all(np.linalg.norm(np.asarray(outs[1:]), axis=-1) <= bound * (1 + 1e-5))


@given(seed=SEEDS, L=st.sampled_from([2, 4]), d=WIDTHS, r=RANKS, s=POS_SCALES, ratio=RATIOS)
def test_rmsnorm_aligned_gain_is_one_layer_not_L(seed, L, d, r, s, ratio):
    Ws, As, Bs = ripple.network(seed, "aligned", L, d, r, ratio)
    x = ripple.top_input(Ws)[None, :]
    ad = _prefix(Ws, As, Bs, x, s, "rms", eps=0.0)[-1]     # exact with eps = 0; eps adds ~eps / mean(h²)
    base = _prefix(Ws, As, Bs, x, 0.0, "rms", eps=0.0)[-1]
    gain = float(jnp.linalg.norm(ad) / jnp.linalg.norm(base))
    assert abs(gain / (1 + s * ratio) - 1) < tol(f32=1e-4, f64=1e-10)
    # without the norm the same network's gain is the full (1 + s m)^L
    gain_none = float(jnp.linalg.norm(_prefix(Ws, As, Bs, x, s, None)[-1])
                      / jnp.linalg.norm(_prefix(Ws, As, Bs, x, 0.0, None)[-1]))
    assert abs(gain_none / (1 + s * ratio) ** L - 1) < tol(f32=1e-4, f64=1e-9)


# -- coupling --------------------------------------------------------------------------------------------
@settings(max_examples=4)
@given(seed=SEEDS, L=st.sampled_from([2, 3]), s=st.sampled_from([-2.0, 4.0]))
def test_hessian_blocks_match_autodiff_through_the_model(seed, L, s):
    d, r = 4, 1
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, 0.3)
    X = jax.random.normal(jax.random.key(seed), (6, d), Ws.dtype)
    Y = jax.random.normal(jax.random.key(seed + 1), (6, d), Ws.dtype)
    model, frozen, params = ripple.as_model(Ws, As, Bs, s)
    H = _model_hessian(model, frozen, params, X, Y)
    want = np.zeros((L, L))
    for k in range(L):
        for l in range(L):
            blk = [H[k].A[l].A, H[k].A[l].B, H[k].B[l].A, H[k].B[l].B]
            want[k, l] = np.sqrt(sum(float(jnp.sum(jnp.square(b))) for b in blk))
    assert rel_error(_blocks(Ws, As, Bs, X, Y, s), want) < tol(f32=1e-4, f64=1e-10)


@settings(max_examples=6)
@given(seed=SEEDS, s=st.sampled_from([0.3, 2.0, 7.0]))
def test_scale_only_rescales_the_hessian_at_a_fixed_function(seed, s):
    L, d, r = 3, 4, 2
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, 0.3)
    X = jax.random.normal(jax.random.key(seed), (8, d), Ws.dtype)
    Y = jax.random.normal(jax.random.key(seed + 1), (8, d), Ws.dtype)
    H_s = np.asarray(_blocks(Ws, As, Bs, X, Y, s))
    H_1 = np.asarray(_blocks(Ws, As * np.sqrt(s), Bs * np.sqrt(s), X, Y, 1.0))
    assert rel_error(H_s, s * H_1) < tol(f32=1e-4, f64=1e-10)
    assert np.max(np.abs(ripple.coupling(H_s)[0] - ripple.coupling(H_1)[0])) < tol(f32=1e-4, f64=1e-10)


@settings(max_examples=4)
@given(seed=SEEDS, s=st.sampled_from([0.25, 3.0, 16.0]))
def test_lora_factorization_reweights_the_hessian_at_a_fixed_function(seed, s):
    """With A fixed and B/s (the same function as (A, B) at s = 1), the Hessian is D H_1 D, D = diag(1 on A,
    s on B): s only re-weights A's and B's coordinates."""
    L, d, r = 2, 4, 1
    Ws, As, Bs = ripple.network(seed, "random", L, d, r, 0.3)
    X = jax.random.normal(jax.random.key(seed), (8, d), Ws.dtype)
    Y = jax.random.normal(jax.random.key(seed + 1), (8, d), Ws.dtype)
    hess = jax.jit(jax.hessian(lambda A, B, s: ripple.regression_loss(Ws, A, B, X, Y, s), argnums=(0, 1)))
    H_s, H_1 = hess(As, Bs / s, s), hess(As, Bs, 1.0)
    weight = {(0, 0): 1.0, (0, 1): s, (1, 0): s, (1, 1): s * s}
    for (i, j), w in weight.items():
        assert rel_error(H_s[i][j], w * H_1[i][j]) < tol(f32=2e-4, f64=1e-10)


def test_identity_padding_keeps_the_hessian_of_the_real_layers():
    d, r = 4, 2
    Ws, As, Bs = ripple.network(3, "random", 2, d, r, 0.3)
    X = jax.random.normal(jax.random.key(0), (8, d), Ws.dtype)
    Y = jax.random.normal(jax.random.key(1), (8, d), Ws.dtype)
    pad = lambda a, fill: jnp.concatenate([a, fill[None]])
    H = np.asarray(_blocks(Ws, As, Bs, X, Y, 2.0))
    H_pad = np.asarray(_blocks(pad(Ws, jnp.eye(d, dtype=Ws.dtype)), pad(As, jnp.zeros_like(As[0])),
                               pad(Bs, jnp.zeros_like(Bs[0])), X, Y, 2.0))
    assert rel_error(H_pad[:2, :2], H) < tol(f32=1e-5, f64=1e-12)


def test_coupling_normalization():
    kappa, mean = ripple.coupling(np.array([[9.0, 3.0, 0.0], [3.0, 1.0, 1.0], [0.0, 1.0, 4.0]]))
    assert np.allclose(np.diag(kappa), 1.0)
    assert np.isclose(kappa[0, 1], 1.0) and np.isclose(kappa[1, 2], 0.5)
    assert np.isclose(mean, (2 * 1.0 + 2 * 0.5) / 6)


# -- the fine-tuning task and ALLoRA's input gradient ---------------------------------------------------
def test_deep_teacher_is_seeded_and_consistent():
    base, data, val = deep_teacher(seed=4, layers=3, d=5, n_train=7, n_test=6)
    base2, data2, _ = deep_teacher(seed=4, layers=3, d=5, n_train=7, n_test=6)
    assert all(np.array_equal(a, b) for a, b in zip(base, base2)) and np.array_equal(data.Y, data2.Y)
    assert np.array_equal(val.X, data.X) and not np.array_equal(val.X_test, data.X_test)
    # the base model does not fit the teacher (every layer is shifted)
    model = models.MultilinearLoRA(cfg=None)
    assert float(models.mse(model.apply(base, base, data.X), data.Y)) > 1e-3


def test_allora_leaves_the_input_gradient_unscaled():
    from toyllora.claims.allora.input_gradient import input_gradient_mechanism

    m = input_gradient_mechanism(seed=1)
    assert m["allora_vs_lora_rel"] < tol(f32=1e-5, f64=1e-12)
    assert m["scaled_vs_allora_rel"] > 1e-2


# -- bad input -------------------------------------------------------------------------------------------
def test_bad_input_raises_value_error_naming_the_field():
    with pytest.raises(ValueError, match=r"^kind: .*allowed"):
        ripple.network(0, "diagonal", 2, 4, 1, 0.1)
    with pytest.raises(ValueError, match=r"^rank: "):
        ripple.network(0, "random", 2, 4, 5, 0.1)
    with pytest.raises(ValueError, match=r"^norm: .*allowed"):
        ripple.forward_prefixes(*ripple.network(0, "random", 2, 4, 1, 0.1), jnp.ones((1, 4)), 1.0, "batch")
    with pytest.raises(ValueError, match=r"^Ws: "):
        ripple.merged(jnp.ones((2, 3, 4)), jnp.ones((2, 1, 4)), jnp.ones((2, 3, 1)), 1.0)
    with pytest.raises(ValueError, match=r"^shift_rank: "):
        deep_teacher(layers=2, d=3, shift_rank=4)
