"""The LoRA-family baselines against their papers' defining formulas: MiLoRA, LoRA-GA, MoRA, AdaLoRA.

MiLoRA (arXiv:2406.09044): the minor r singular triplets of W split like PiSSA, frozen residual.
LoRA-GA (arXiv:2407.05000): A, B from the SVD of the first gradient, stable scale; its first step is the
rank-2r part of the full gradient step. MoRA (arXiv:2405.12130): r̂ from the parameter count, the
compression/decompression operators, block-diagonal ΔW. AdaLoRA (arXiv:2303.10512): the orthogonality
regularizer, the cubic budget, the importance EMAs and the top-b(t) masking.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

from toyllora import adalora, lora, models, mora
from toyllora.adalora import AdaLoraParams
from toyllora.config import MORA_TYPES, LoraConfig, RankAllocation
from toyllora.data import teacher_student
from toyllora.mora import MoraParams
from toyllora.testing import float_dtype, rel_error, tol
from toyllora.train import Trainer, grid, make_optimizer

SHAPES = [(6, 5), (8, 8)]  # (d_out, d_in) buckets, shared with the toy models below: few recompiles
TIGHT = dict(f32=2e-5, f64=1e-12)


def _with_spectrum(seed, shape):
    """``U diag(S) Vᵀ`` with random orthonormal U, V and well-separated singular values k, k-1, ..., 1."""
    rng = np.random.default_rng(seed)
    d_out, d_in = shape
    k = min(shape)
    U, _ = np.linalg.qr(rng.standard_normal((d_out, k)))
    V, _ = np.linalg.qr(rng.standard_normal((d_in, k)))
    S = np.arange(k, 0, -1, dtype=np.float64)
    return (U * S) @ V.T, U, S, V


def _arr(a):
    return jnp.asarray(np.asarray(a, np.float64), float_dtype())


def _normal(seed, *shape):
    """NumPy draws in float64, cast to JAX's dtype (no per-shape compilation, same data under x64 on/off)."""
    return _arr(np.random.default_rng(seed).standard_normal(shape))


def _perturb(p, seed, size=0.3):
    leaves, treedef = jax.tree.flatten(p)
    return treedef.unflatten([a + size * _normal(seed + 1000 + i, *a.shape) for i, a in enumerate(leaves)])


def _allocation(**kw):
    kw = dict(dict(target_rank=1, total_steps=40, init_warmup=5, final_warmup=10, mask_interval=2), **kw)
    return RankAllocation(**kw)


# -- MiLoRA -----------------------------------------------------------------------------------------


@given(shape=st.sampled_from(SHAPES), rank=st.integers(1, 3), scaling=st.sampled_from(["lora", "none", 0.7]),
       seed=st.integers(0, 2**16))
@settings(max_examples=5)
def test_milora_splits_the_minor_singular_triplets_and_freezes_the_principal_part(shape, rank, scaling, seed):
    """MiLoRA Sec. 3: B = U_min sqrt(S_min/s), A = sqrt(S_min/s) V_minᵀ, W_frozen = W − s·BA (principal part)."""
    W, U, S, V = _with_spectrum(seed, shape)
    cfg = LoraConfig(rank=rank, alpha=3.0, scaling=scaling, init="milora")
    frozen, p = lora.init(jax.random.key(seed), _arr(W), cfg)
    k = min(shape)
    minor = (U[:, k - rank:] * S[k - rank:]) @ V[:, k - rank:].T
    assert rel_error(p.B @ p.A, minor / cfg.s) < tol(**TIGHT)                 # BA = minor part / s
    assert rel_error(frozen, W - minor) < tol(**TIGHT)                        # principal part stays frozen
    for j in range(rank):                                                     # triplet by triplet
        i = k - rank + j
        outer = np.outer(np.asarray(p.B[:, j], np.float64), np.asarray(p.A[j], np.float64))
        assert rel_error(outer, S[i] * np.outer(U[:, i], V[:, i]) / cfg.s) < tol(**TIGHT)
        np.testing.assert_allclose(float(jnp.linalg.norm(p.A[j])) ** 2, S[i] / abs(cfg.s), rtol=tol(**TIGHT))


def test_milora_and_pissa_take_opposite_ends_of_the_spectrum():
    W, U, S, V = _with_spectrum(3, (8, 8))
    cfg = LoraConfig(rank=2, scaling="none")
    _, mi = lora.init(jax.random.key(0), _arr(W), cfg.replace(init="milora"))
    _, pi = lora.init(jax.random.key(0), _arr(W), cfg.replace(init="pissa"))
    np.testing.assert_allclose(jnp.linalg.norm(mi.A, axis=1) ** 2, S[-2:], rtol=1e-5)   # 2, 1
    np.testing.assert_allclose(jnp.linalg.norm(pi.A, axis=1) ** 2, S[:2], rtol=1e-5)    # 8, 7


# -- LoRA-GA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["ArB2r", "A2rBr"])
@given(shape=st.sampled_from(SHAPES), rank=st.integers(1, 2), gamma=st.sampled_from([None, 4.0]),
       seed=st.integers(0, 2**16))
@settings(max_examples=4)
def test_lora_ga_factors_are_the_gradient_singular_vectors_times_the_stable_scale(direction, shape, rank, gamma,
                                                                                   seed):
    """Algorithm 1: A = V[:, :r]ᵀ, B = U[:, r:2r] (ArB2r; A2rBr swaps), both × d_out^(1/4)/sqrt(γ), γ = 16."""
    W, _, _, _ = _with_spectrum(seed + 1, shape)
    G, U, _, V = _with_spectrum(seed, shape)
    cfg = LoraConfig(rank=rank, alpha=2.0, scaling="rslora", init="lora_ga", lora_ga_gamma=gamma,
                     lora_ga_direction=None if direction == "ArB2r" else direction)
    frozen, p = lora.init(jax.random.key(seed), _arr(W), cfg, grad=_arr(G))
    c = shape[0] ** 0.25 / math.sqrt(16.0 if gamma is None else gamma)
    a_idx, b_idx = (slice(0, rank), slice(rank, 2 * rank))[:: 1 if direction == "ArB2r" else -1]
    A, B = np.asarray(p.A, np.float64), np.asarray(p.B, np.float64)
    # up to the sign of each singular vector: |<A_j, v_j>| = c ||v_j|| = c and A has no other component
    np.testing.assert_allclose(np.abs(A @ V[:, a_idx]), c * np.eye(rank), atol=50 * tol(**TIGHT))
    np.testing.assert_allclose(np.abs(U[:, b_idx].T @ B), c * np.eye(rank), atol=50 * tol(**TIGHT))
    assert rel_error(np.abs(A), c * np.abs(V[:, a_idx].T)) < tol(**TIGHT)
    assert rel_error(np.abs(B), c * np.abs(U[:, b_idx])) < tol(**TIGHT)
    assert rel_error(frozen, W - cfg.s * B @ A) < tol(**TIGHT)                # residual base


@functools.lru_cache(maxsize=None)
def _bases(d=5):
    mlp = ((_normal(3, 6, d) * math.sqrt(2 / d), jnp.zeros(6, float_dtype())),
           (_normal(4, 4, 6) * math.sqrt(2 / 6), jnp.zeros(4, float_dtype())))
    return {"linear": _normal(0, 6, d), "multilinear": (_normal(1, d, d) / math.sqrt(d), _normal(2, d, d) / math.sqrt(d)),
            "mlp": mlp}


def _model(kind, cfg):
    return {"linear": models.LinearLoRA(cfg), "multilinear": models.MultilinearLoRA(cfg, norm="rms"),
            "mlp": models.MLPLoRA(cfg)}[kind]


def _batch(kind, seed=1, n=16, d=5):
    X = _normal(seed, n, d)
    if kind == "mlp":
        return X, jnp.arange(n) % 4
    return X, (jnp.sin(jnp.concatenate([X, X[:, :1]], axis=1)) if kind == "linear" else jnp.cos(X))


@pytest.mark.parametrize("kind", ["linear", "multilinear", "mlp"])
def test_lora_ga_first_sgd_step_is_the_rank_2r_part_of_the_full_gradient_step(kind):
    """Sec. 3.2: the first step of s·BA is −lr·s²·(G A₀ᵀA₀ + B₀B₀ᵀG) = −lr·s²c²·G_{2r} (+ O(lr²)), G_{2r} the
    top-2r SVD part of each layer's full gradient: d(merged W_l)/d(lr) at lr = 0, by forward-mode autodiff."""
    cfg = LoraConfig(rank=1, alpha=2.0, scaling="rslora", init="lora_ga")
    m, base = _model(kind, cfg), _bases()[kind]

    @jax.jit  # one compiled program per model (compiling op by op would dominate the test's time)
    def first_step_slope(base, X, Y):
        G = models.first_gradients(m, base, X, Y)
        frozen, params = m.init(jax.random.key(0), base, grad=G)
        g = jax.grad(lambda p: models.loss(m, frozen, p, X, Y))(params)

        def merged_after_step(lr):
            return m.weights(frozen, jax.tree.map(lambda a, b: a - lr * b, params, g))

        one = jnp.ones((), float_dtype())
        return G, jax.jvp(merged_after_step, (0.0 * one,), (one,))[1]

    G, slope = first_step_slope(base, *_batch(kind))
    grads = (G,) if kind == "linear" else G
    for slope_l, G_l in zip(slope, grads):
        G_l = np.asarray(G_l, np.float64)
        U, S, Vt = np.linalg.svd(G_l, full_matrices=False)
        G_2r = (U[:, :2] * S[:2]) @ Vt[:2]
        c2 = math.sqrt(G_l.shape[0]) / 16.0                       # c² = sqrt(d_out) / γ
        assert rel_error(slope_l, -cfg.s ** 2 * c2 * G_2r) < 50 * tol(f32=1e-5, f64=1e-12)


def test_lora_ga_needs_a_gradient_and_checks_it():
    W = _arr(_with_spectrum(0, (6, 5))[0])
    cfg = LoraConfig(rank=2, init="lora_ga")
    with pytest.raises(ValueError, match=r"^grad: init='lora_ga' needs"):
        lora.init(jax.random.key(0), W, cfg)
    with pytest.raises(ValueError, match=r"^grad: must have the shape"):
        lora.init(jax.random.key(0), W, cfg, grad=jnp.ones((5, 6)))
    with pytest.raises(ValueError, match=r"^grad: only init='lora_ga'"):
        lora.init(jax.random.key(0), W, LoraConfig(rank=2), grad=jnp.ones((6, 5)))
    with pytest.raises(ValueError, match=r"^rank: init='lora_ga' uses 2·rank"):
        lora.init(jax.random.key(0), W, LoraConfig(rank=3, init="lora_ga"), grad=jnp.ones((6, 5)))
    with pytest.raises(ValueError, match=r"^grad"):
        models.LinearLoRA(cfg).init(jax.random.key(0), W)


# -- MoRA -------------------------------------------------------------------------------------------


@given(rank=st.integers(1, 64), d_in=st.integers(1, 4096), d_out=st.integers(1, 4096))
def test_mora_square_size_matches_the_lora_parameter_count(rank, d_in, d_out):
    """Sec. 3: r̂² ≈ r·(d_in + d_out) (r̂ the nearest integer to its square root, as the official code)."""
    n = rank * (d_in + d_out)
    r_hat = mora.square_size(rank, d_in, d_out)
    assert abs(r_hat - math.sqrt(n)) <= 0.5
    assert mora.square_size(8, 4096, 4096) ** 2 == 8 * (4096 + 4096)


def _compress_as_written(x, r_hat, kind):
    d = len(x)
    if kind == "truncation":
        return x[:r_hat]
    n = -(-d // r_hat)
    if kind == "sharing":  # Eq. 6: group j sums the inputs k ≡ j (mod r̂), inputs wrapped around
        out = np.zeros(r_hat)
        for k in range(n * r_hat):
            out[k % r_hat] += x[k % d]
        return out
    h, out = r_hat // 2, np.zeros((n, r_hat))  # Eq. 9: chunk t rotated as RoPE by t·10000^(−2j/r̂)
    for t in range(n):
        chunk = np.array([x[(t * r_hat + j) % d] for j in range(r_hat)])
        out[t] = chunk
        for j in range(h):
            th = t * 10000.0 ** (-2.0 * j / r_hat)
            out[t, j] = chunk[j] * math.cos(th) - chunk[j + h] * math.sin(th)
            out[t, j + h] = chunk[j + h] * math.cos(th) + chunk[j] * math.sin(th)
    return out


def _decompress_as_written(z, d_out, kind):
    if kind == "truncation":
        return np.concatenate([z, np.zeros(d_out - len(z))])
    flat = z.reshape(-1)
    return np.array([flat[i % len(flat)] for i in range(d_out)])


@pytest.mark.parametrize("kind", MORA_TYPES)
@given(r_hat=st.integers(1, 5), d_in=st.integers(5, 11), d_out=st.integers(5, 11), seed=st.integers(0, 2**16))
@settings(max_examples=4)
def test_mora_compression_and_decompression_as_written(kind, r_hat, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d_in)
    c = mora.compress(_arr(x), r_hat, kind)
    ref = _compress_as_written(x, r_hat, kind)
    assert rel_error(c, ref) < tol(f32=1e-5, f64=1e-12)
    z = rng.standard_normal(ref.shape)
    assert rel_error(mora.decompress(_arr(z), d_out, kind), _decompress_as_written(z, d_out, kind)) < 1e-6


def test_mora_rope_update_is_block_diagonal_in_M_R_t():
    """Eq. 9: ΔW = diag(M R_1, ..., M R_n) when r̂ divides d_in = d_out (here r̂ = round(sqrt(1·16)) = 4)."""
    cfg = LoraConfig(rank=1, adapter="mora", scaling="none")
    _, p = lora.init(jax.random.key(0), jnp.zeros((8, 8), float_dtype()), cfg)
    M = np.random.default_rng(0).standard_normal((4, 4))
    dW = np.asarray(lora.delta(MoraParams(M=_arr(M), d_in=8, d_out=8), cfg), np.float64)
    for t in range(2):
        R = np.eye(4)
        for j in range(2):
            th = t * 10000.0 ** (-j / 2)
            R[j, j], R[j, j + 2], R[j + 2, j], R[j + 2, j + 2] = math.cos(th), -math.sin(th), math.sin(th), math.cos(th)
        assert rel_error(dW[4 * t:4 * t + 4, 4 * t:4 * t + 4], M @ R) < tol(f32=1e-5, f64=1e-12)
    assert np.all(dW[:4, 4:] == 0) and np.all(dW[4:, :4] == 0)
    assert np.linalg.matrix_rank(dW) == 8 > cfg.rank  # high-rank update from a rank-1 parameter budget


# -- AdaLoRA ----------------------------------------------------------------------------------------


_penalty_grad = jax.jit(jax.grad(adalora.orthogonality_penalty))


@given(shape=st.sampled_from(SHAPES), rank=st.integers(1, 4), seed=st.integers(0, 2**16))
@settings(max_examples=5)
def test_adalora_orthogonality_regularizer_value_and_gradient(shape, rank, seed):
    """Sec. 3.1: R(P, Q) = ||PᵀP − I||²_F + ||QQᵀ − I||²_F; ∂R/∂P = 4P(PᵀP − I), ∂R/∂Q = 4(QQᵀ − I)Q."""
    rng = np.random.default_rng(seed)
    P, Q = rng.standard_normal((shape[0], rank)), rng.standard_normal((rank, shape[1]))
    I = np.eye(rank)
    p = {"layers": (AdaLoraParams(P=_arr(P), E=_arr(np.ones(rank)), Q=_arr(Q)),), "bias": _arr(np.ones(2))}
    value = np.sum((P.T @ P - I) ** 2) + np.sum((Q @ Q.T - I) ** 2)
    assert rel_error(adalora.orthogonality_penalty(p), value) < tol(f32=1e-5, f64=1e-12)
    g = _penalty_grad(p)
    assert rel_error(g["layers"][0].P, 4 * P @ (P.T @ P - I)) < tol(f32=1e-5, f64=1e-12)
    assert rel_error(g["layers"][0].Q, 4 * (Q @ Q.T - I) @ Q) < tol(f32=1e-5, f64=1e-12)
    assert float(jnp.abs(g["layers"][0].E).max()) == 0.0 and float(jnp.abs(g["bias"]).max()) == 0.0


def test_adalora_budget_schedule_values():
    """Sec. 3.3: b(t) = b(0) before t_i, b(T) + (b(0) − b(T))(1 − (t − t_i)/(T − t_i − t_f))³, then b(T)."""
    a = RankAllocation(target_rank=2, total_steps=100, init_warmup=10, final_warmup=30)
    table = adalora.budget_schedule(a, initial=12, target=4)                  # 2 layers, ranks 6 → 2
    assert table.shape == (101,) and table.dtype == np.int32
    assert set(table[:10]) == {12} and table[10] == 12                        # warm-up, t_i
    assert table[40] == 4 + (12 - 4) // 8 == 5                               # mid: (1 − 1/2)³ = 1/8
    assert table[70] == 4 and set(table[70:]) == {4}                          # T − t_f and after
    assert np.all(np.diff(table) <= 0)
    t = 25  # one more point of the cubic, in float64 as the official code
    assert table[t] == int(4 + 8 * (1 - (t - 10) / 60) ** 3)


_keep = jax.jit(adalora.keep_most_important)


@given(n=st.sampled_from([1, 5, 12]), seed=st.integers(0, 2**16), data=st.data())
@settings(max_examples=8)
def test_keep_most_important_keeps_exactly_b_and_the_best(n, seed, data):
    b = data.draw(st.integers(0, n))
    scores = _arr(np.random.default_rng(seed).standard_normal(n))
    keep = np.asarray(_keep(scores, jnp.asarray(b)))
    assert keep.sum() == b
    s = np.asarray(scores)
    if 0 < b < n:
        assert s[keep].min() >= s[~keep].max()


def test_adalora_importance_is_the_smoothed_sensitivity_times_uncertainty():
    """Sec. 3.2: I = |w·∂L/∂w| (post-step w, as the official code), Ī ← β1Ī + (1−β1)I,
    Ū ← β2Ū + (1−β2)|I − Ī|, s = Ī·Ū, S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji)."""
    rng = np.random.default_rng(0)
    arr = lambda *s: rng.standard_normal(s)
    p = AdaLoraParams(P=arr(5, 3), E=arr(3), Q=arr(3, 4))
    grads = [AdaLoraParams(P=arr(5, 3), E=arr(3), Q=arr(3, 4)) for _ in range(2)]
    a = _allocation(init_warmup=10, beta1=0.8, beta2=0.6)                      # no masking in these steps
    lr = 0.1
    opt = adalora.allocate_ranks(optax.sgd(lr), a)
    params = jax.tree.map(_arr, p)
    state, update = opt.init(params), jax.jit(opt.update)
    s_bar = u_bar = jax.tree.map(np.zeros_like, p)
    w = p
    for g in grads:
        u, state = update(jax.tree.map(_arr, g), state, params)
        params = optax.apply_updates(params, u)
        w = jax.tree.map(lambda w_, g_: w_ - lr * g_, w, g)
        sens = jax.tree.map(lambda w_, g_: np.abs(w_ * g_), w, g)
        s_bar = jax.tree.map(lambda s_, i_: 0.8 * s_ + 0.2 * i_, s_bar, sens)
        u_bar = jax.tree.map(lambda u_, i_, s_: 0.6 * u_ + 0.4 * np.abs(i_ - s_), u_bar, sens, s_bar)
        for got, want in zip(jax.tree.leaves(state.sensitivity[0]), jax.tree.leaves(s_bar)):
            assert rel_error(got, want) < tol(f32=1e-5, f64=1e-12)
        for got, want in zip(jax.tree.leaves(state.uncertainty[0]), jax.tree.leaves(u_bar)):
            assert rel_error(got, want) < tol(f32=1e-5, f64=1e-12)
    s = jax.tree.map(lambda x, y: x * y, s_bar, u_bar)
    S = s.E + s.Q.mean(axis=1) + s.P.mean(axis=0)
    assert rel_error(adalora.triplet_scores(state.sensitivity[0], state.uncertainty[0]), S) < tol(f32=1e-5, f64=1e-12)


def test_allocate_ranks_masks_to_the_budget_over_all_layers_and_leaves_other_leaves_alone():
    rng = np.random.default_rng(1)
    arr = lambda *s: _arr(rng.standard_normal(s))
    params = {"layers": (AdaLoraParams(P=arr(5, 4), E=arr(4), Q=arr(4, 6)),
                         AdaLoraParams(P=arr(6, 4), E=arr(4), Q=arr(4, 5))), "bias": arr(3)}
    a = RankAllocation(target_rank=2, total_steps=20, init_warmup=2, final_warmup=5, mask_interval=3)
    table = adalora.budget_schedule(a, initial=8, target=4)
    opt = adalora.allocate_ranks(optax.sgd(0.05), a)
    update = jax.jit(opt.update)
    state, prev = opt.init(params), np.ones(8, bool)
    for t in range(20):
        g = jax.tree.map(lambda x: _arr(rng.standard_normal(x.shape)), params)
        u, state = update(g, state, params)
        np.testing.assert_allclose(u["bias"], -0.05 * g["bias"], rtol=1e-6)  # not an AdaLoRA leaf
        params = optax.apply_updates(params, u)
        mask = np.concatenate([np.asarray(m) for m in state.mask])
        E = np.concatenate([np.asarray(l.E) for l in params["layers"]])
        assert np.all(E[~mask] == 0.0) and np.all(E[mask] != 0.0)            # pruned λ are exactly 0
        if t >= 2 and (t >= 15 or t % 3 == 0):                               # a re-allocation step
            assert mask.sum() == table[t]
            scores = np.concatenate([np.asarray(adalora.triplet_scores(s, v))
                                     for s, v in zip(state.sensitivity, state.uncertainty)])
            if 0 < mask.sum() < 8:
                assert scores[mask].min() >= scores[~mask].max()             # the most important kept
        else:
            np.testing.assert_array_equal(mask, prev)                        # the mask is held
        prev = mask
    assert mask.sum() == 4 and update._cache_size() == 1


# -- every new scheme on every toy model -------------------------------------------------------------


def _alloc_cfg(**kw):
    return LoraConfig(rank=2, adapter="adalora", allocation=_allocation(), **kw)


SCHEMES = {
    "milora": LoraConfig(rank=2, alpha=4.0, init="milora"),
    "lora_ga": LoraConfig(rank=1, alpha=4.0, init="lora_ga"),
    "mora_rope": LoraConfig(rank=1, adapter="mora", scaling="none"),
    "mora_sharing": LoraConfig(rank=1, adapter="mora", scaling="none", mora_type="sharing"),
    "mora_truncation": LoraConfig(rank=1, adapter="mora", scaling="none", mora_type="truncation"),
    "adalora": _alloc_cfg(alpha=4.0),
}


_first_gradients = jax.jit(models.first_gradients, static_argnums=0)


def _init(m, cfg, base, kind):
    grad = _first_gradients(m, base, *_batch(kind)) if cfg.needs_gradient else None
    return m.init(jax.random.key(2), base, grad=grad)


@pytest.mark.parametrize("kind", ["linear", "multilinear", "mlp"])
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_output_equals_base_model_at_init(scheme, kind):
    cfg, base = SCHEMES[scheme], _bases()[kind]
    X = _normal(7, 7, 5)
    full = _model(kind, None)
    ref = full.apply(*full.init(jax.random.key(0), base), X)
    m = _model(kind, cfg)
    frozen, params = _init(m, cfg, base, kind)
    assert rel_error(m.apply(frozen, params, X), ref) < 20 * tol(f32=1e-6, f64=1e-14)


@pytest.mark.parametrize("scheme", list(SCHEMES))
@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16))
@settings(max_examples=3)
def test_adapter_forward_equals_merged_weight_forward(scheme, shape, seed):
    cfg = SCHEMES[scheme]
    W = _arr(_with_spectrum(seed, shape)[0])
    grad = _arr(_with_spectrum(seed + 1, shape)[0]) if cfg.needs_gradient else None
    frozen, p = lora.init(jax.random.key(seed), W, cfg, grad=grad)
    p = _perturb(p, seed)
    x = _normal(seed + 2, 5, shape[1])
    merged = lora.merge(frozen, p, cfg)
    assert rel_error(lora.apply(frozen, p, x, cfg), x @ merged.T) < 50 * tol(f32=1e-6, f64=1e-14)


@pytest.mark.parametrize("scheme", ["mora_rope", "adalora"])
@pytest.mark.parametrize("site", ["input", "output", "bottleneck"])
def test_dropout_on_the_new_adapters_is_train_only(scheme, site):
    if scheme.startswith("mora") and site == "bottleneck":
        with pytest.raises(ValueError, match="^dropout_site"):
            SCHEMES[scheme].replace(keep=0.5, dropout_site=site)
        return
    cfg = SCHEMES[scheme].replace(keep=0.5, dropout_site=site)
    W = _arr(_with_spectrum(0, (8, 8))[0])
    frozen, p = lora.init(jax.random.key(0), W, cfg)
    p = _perturb(p, 0)
    x = jnp.ones((3, 8), W.dtype)
    eval_out = lora.apply(frozen, p, x, cfg)
    assert rel_error(eval_out, x @ lora.merge(frozen, p, cfg).T) < 1e-5
    train_out = lora.apply(frozen, p, x, cfg, train=True, key=jax.random.key(1))
    assert float(jnp.max(jnp.abs(train_out - eval_out))) > 0


def test_every_new_option_has_a_visible_effect():
    W = _arr(_with_spectrum(4, (8, 8))[0])
    G = _arr(_with_spectrum(5, (8, 8))[0])
    x = _normal(3, 4, 8)

    def out(cfg):
        frozen, p = lora.init(jax.random.key(0), W, cfg, grad=G if cfg.needs_gradient else None)
        return np.asarray(lora.apply(frozen, _perturb(p, 1), x, cfg))

    ga = LoraConfig(rank=2, init="lora_ga")
    assert rel_error(out(ga), out(ga.replace(lora_ga_gamma=4.0))) > 1e-3
    assert rel_error(out(ga), out(ga.replace(lora_ga_direction="A2rBr"))) > 1e-3
    assert rel_error(out(ga.replace(init="milora")), out(ga.replace(init="pissa"))) > 1e-3
    mo = SCHEMES["mora_rope"]
    for a, b in (("rope", "sharing"), ("sharing", "truncation")):
        assert rel_error(out(mo.replace(mora_type=a)), out(mo.replace(mora_type=b))) > 1e-3
    ad = SCHEMES["adalora"]
    assert rel_error(out(ad), out(ad.replace(alpha=8.0))) > 1e-3


def test_factor_labels_for_the_new_pytrees():
    m = MoraParams(M=jnp.zeros((3, 3)), d_in=5, d_out=4)
    a = AdaLoraParams(P=jnp.ones((4, 2)), E=jnp.zeros(2), Q=jnp.ones((2, 5)))
    labels = lora.factor_labels((m, a))
    assert labels[0].M == "other" and (labels[1].P, labels[1].E, labels[1].Q) == ("B", "other", "A")
    assert jax.tree.structure(labels) == jax.tree.structure((m, a))
    g = (MoraParams(M=jnp.ones((3, 3)), d_in=5, d_out=4), AdaLoraParams(P=jnp.ones((4, 2)), E=jnp.ones(2),
                                                                        Q=jnp.ones((2, 5))))
    opt = make_optimizer("sgd", {"lr": 0.1, "b_ratio": 4.0})                 # LoRA+ through the labels
    u, _ = opt.update(g, opt.init(g), g)
    assert [float(u[0].M[0, 0]), float(u[1].E[0]), float(u[1].Q[0, 0])] == pytest.approx([-0.1] * 3)
    assert float(u[1].P[0, 0]) == pytest.approx(-0.4)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_allocate_ranks_accepts_extra_args_and_keeps_dtypes(dtype):
    """Part of optax's contract for new transforms (optax/contrib/_common_test.py)."""
    p = {"ada": AdaLoraParams(P=jnp.ones((3, 2), dtype), E=jnp.ones(2, dtype), Q=jnp.ones((2, 4), dtype)),
         "bias": jnp.ones(3, dtype)}
    opt = adalora.allocate_ranks(optax.adam(0.1), _allocation(total_steps=4, init_warmup=0, final_warmup=0))
    state = opt.init(p)
    update = jax.jit(functools.partial(opt.update, some_other_arg="x"))
    for _ in range(3):
        u, state = update(p, state, p, loss=jnp.asarray(1.0))
        p = optax.apply_updates(p, u)
    for leaf in jax.tree.leaves(u) + jax.tree.leaves(p):
        assert leaf.dtype == dtype
    assert int(state.count) == 3 and sum(int(m.sum()) for m in state.mask) == 1


@pytest.mark.parametrize("kwargs, field", [
    (dict(adapter="vera"), "adapter"),
    (dict(adapter="mora", scaling="none", dora=True), "dora"),
    (dict(adapter="mora", scaling="none", method="allora"), "method"),
    (dict(adapter="adalora", method="asf", scaling="none", allocation=_allocation()), "method"),
    (dict(adapter="mora"), "scaling"),
    (dict(adapter="mora", scaling="none", dropout_site="bottleneck"), "dropout_site"),
    (dict(adapter="mora", scaling="none", mora_type="hadamard"), "mora_type"),
    (dict(adapter="mora", scaling="none", init="pissa"), "init"),
    (dict(mora_type="rope"), "mora_type"),
    (dict(adapter="adalora"), "allocation"),
    (dict(allocation=_allocation()), "allocation"),
    (dict(adapter="adalora", rank=2, allocation=_allocation(target_rank=3)), "target_rank"),
    (dict(adapter="adalora", dora=True, allocation=_allocation()), "dora"),
    (dict(lora_ga_gamma=4.0), "lora_ga_gamma"),
    (dict(init="lora_ga", lora_ga_gamma=0.0), "lora_ga_gamma"),
    (dict(init="lora_ga", lora_ga_direction="ArBr"), "lora_ga_direction"),
    (dict(init="milora", init_scale=2.0), "init_dist/init_scale"),
    (dict(init="lora_ga", init_dist="gaussian"), "init_dist/init_scale"),
])
def test_bad_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        LoraConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    (dict(target_rank=0, total_steps=10), "target_rank"), (dict(target_rank=1, total_steps=10, beta1=1.0), "beta1"),
    (dict(target_rank=1, total_steps=10, beta2=0.0), "beta2"),
    (dict(target_rank=1, total_steps=10, init_warmup=5, final_warmup=5), "total_steps"),
    (dict(target_rank=1, total_steps=10, mask_interval=0), "mask_interval"),
    (dict(target_rank=1, total_steps=10, orth_reg=-1.0), "orth_reg"),
    (dict(target_rank=1, total_steps=10, init_warmup=-1), "init_warmup"),
])
def test_bad_rank_allocation_raises_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        RankAllocation(**kwargs)


def test_trainer_checks_the_adalora_schedule_length():
    with pytest.raises(ValueError, match="^steps: an AdaLoRA"):
        Trainer(models.LinearLoRA(SCHEMES["adalora"]), steps=30, stride=10)


def test_mora_square_too_large_for_the_layer_raises():
    with pytest.raises(ValueError, match="^rank: MoRA"):
        lora.init(jax.random.key(0), jnp.zeros((3, 5)), LoraConfig(rank=2, adapter="mora", scaling="none"))


# -- in the Trainer ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task():
    return teacher_student(seed=0, d_in=8, d_out=8, n_train=32, n_test=16, shift_rank=2)


@pytest.mark.parametrize("scheme", ["milora", "lora_ga", "mora_rope"])
def test_a_short_trainer_run_lowers_the_loss(task, scheme):
    cfg = SCHEMES[scheme]
    tr = Trainer(models.LinearLoRA(cfg), optimizer="adam", steps=60, stride=30)
    h = tr.run(task.W0, task.data, {"lr": 0.02}, seed=0)
    loss = np.asarray(h.metrics["train_loss"])
    assert int(h.diverged_step) == -1 and loss[-1] < 0.7 * loss[0], loss
    own = {"norm_M", "layer_norm_M"} if cfg.adapter == "mora" else {"norm_A", "norm_B"}
    assert own | {"delta_norm", "rownorms"} <= set(h.metrics)
    if cfg.needs_gradient:  # the Trainer's init is model.init(key, base, grad=first_gradients(train data))
        G = models.first_gradients(tr.model, task.W0, task.data.X, task.data.Y)
        frozen, _ = tr.model.init(jax.random.key(0), task.W0, grad=G)
        assert rel_error(h.frozen, frozen) < tol(f32=1e-6, f64=1e-14)


def test_adalora_in_the_trainer_lowers_the_loss_and_ends_at_the_target_budget(task):
    """b(0) = 3, b(T) = 1 triplet; swept over two learning rates (one vmapped, scanned, compiled call)."""
    a = RankAllocation(target_rank=1, total_steps=60, init_warmup=10, final_warmup=20, mask_interval=5)
    cfg = LoraConfig(rank=3, alpha=3.0, adapter="adalora", allocation=a)
    tr = Trainer(models.LinearLoRA(cfg), optimizer="adam", steps=60, stride=30)
    hs = tr.sweep(task.W0, task.data, grid(lr=[0.03, 0.06]), seeds=[0])
    loss = np.asarray(hs.metrics["train_loss"])[:, 0]
    assert np.all(np.asarray(hs.diverged_step) == -1) and np.all(loss[:, -1] < 0.7 * loss[:, 0]), loss
    assert {"norm_P", "norm_E", "norm_Q", "orth_penalty"} <= set(hs.metrics) and "norm_A" not in hs.metrics
    ranks = np.asarray(hs.metrics["layer_rank"])[:, 0, :, 0]
    assert np.all(ranks[:, 0] == 0) and np.all(ranks[:, -1] == 1)           # Λ = 0, then b(T) = 1
    frozen, params = tr.model.init(jax.random.key(0), task.W0)              # γ·R is in the objective
    params = _perturb(params, 0)

    @jax.jit
    def objective_and_parts(frozen, params, X, Y):
        key = jax.random.key(1)
        return (tr._objective(frozen, params, X, Y, key), models.loss(tr.model, frozen, params, X, Y, key=key),
                adalora.orthogonality_penalty(params))

    value, plain, penalty = objective_and_parts(frozen, params, task.data.X, task.data.Y)
    assert rel_error(value, plain + a.orth_reg * penalty) < 1e-6 and float(penalty) > 0
