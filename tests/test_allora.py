"""ALLoRA's custom VJP, its switches and its family (ALLoRA-OD, ASF-LoRA, ALLoRA+D, LoRA×eta).

Every gradient is checked against a reference built by hand in float64 numpy from ``G = ∂L/∂(BA)``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, strategies as st

from toyllora import allora, lora
from toyllora.harness import bench_allora
from toyllora.config import LoraConfig
from toyllora.data import Data, teacher_student
from toyllora.models import LinearLoRA, MLPLoRA, MultilinearLoRA, init_mlp
from toyllora.testing import float_dtype, rel_error, tol, x64
from toyllora.train import Trainer

SHAPES = [(3, 5, 1), (6, 4, 2), (8, 8, 3)]          # (d_out, d_in, r) buckets keep recompiles few
BATCHES = [(), (7,), (2, 3)]                         # leading batch dims of x
DTYPES = [jnp.float32, jnp.float64]
ETAS = [0.5, 2.0, 3.0]


def _skip_without_x64(dtype):
    if jnp.dtype(dtype) == jnp.float64 and not x64():
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


def _arrays(seed, shape, batch, dtype, scale_b=1.0):
    d_out, d_in, r = shape
    rng = np.random.default_rng(seed)   # numpy draws: no per-shape compilation of random ops
    shapes = (batch + (d_in,), (r, d_in), (d_out, r), batch + (d_out,))
    x, A, B, T = (jnp.asarray(rng.standard_normal(s), dtype) for s in shapes)
    return x, A, scale_b * B, T


def _loss(f, T):
    """A non-quadratic loss of the branch output, so that δ = ∂L/∂f varies with f."""
    return jnp.sum(T * jnp.tanh(f))


def _np(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _reference(x, A, B, T, eta):
    """Float64 hand-built quantities: f, δ = ∂L/∂f per sample, G = ∂L/∂(BA), c, and the plain dx."""
    x, A, B, T = _np(x, A, B, T)
    M = B @ A
    f = x @ M.T
    delta = T * (1.0 - np.tanh(f) ** 2)
    G = delta.reshape(-1, delta.shape[-1]).T @ x.reshape(-1, x.shape[-1])
    c = 1.0 / np.sqrt(np.linalg.norm(M, axis=1) + 1.0 / eta**2)
    return dict(M=M, f=f, delta=delta, G=G, c=c, A=A, B=B, x=x, h=x @ A.T, dx=delta @ M)


@functools.partial(jax.jit, static_argnames=("adapt", "scale_input_grad", "per_sample"))
def _grads_jit(x, A, B, T, eta, adapt="both", scale_input_grad=False, per_sample=False):
    f = lambda x, A, B: _loss(allora.branch(x, A, B, eta=eta, adapt=adapt, scale_input_grad=scale_input_grad,
                                            per_sample=per_sample), T)
    return jax.grad(f, argnums=(0, 1, 2))(x, A, B)


def _grads(x, A, B, T, *, eta, **kw):
    """(dx, dA, dB) of the test loss through ``allora.branch`` (jit-compiled; eta traced)."""
    return _grads_jit(x, A, B, T, jnp.asarray(eta, x.dtype), **kw)


# -- the rule itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=st.sampled_from(SHAPES), batch=st.sampled_from(BATCHES), eta=st.sampled_from(ETAS),
       seed=st.integers(0, 2**16))
def test_adapted_gradients_equal_CGAt_and_BtCG_and_dx_is_unadapted(dtype, shape, batch, eta, seed):
    _skip_without_x64(dtype)
    x, A, B, T = _arrays(seed, shape, batch, dtype)
    dx, dA, dB = _grads(x, A, B, T, eta=eta)
    ref = _reference(x, A, B, T, eta)
    C = np.diag(ref["c"])
    t = tol(dtype)
    assert dA.dtype == dtype and dB.dtype == dtype and dx.dtype == dtype
    assert rel_error(dB, C @ ref["G"] @ ref["A"].T) < t
    assert rel_error(dA, ref["B"].T @ C @ ref["G"]) < t
    assert rel_error(dx, ref["dx"]) < t
    # the plain LoRA gradient to x by autodiff is the same thing
    dx_plain = jax.grad(lambda x: _loss((x @ A.T) @ B.T, T))(x)
    assert rel_error(dx, dx_plain) < t


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16), zero_row=st.booleans())
def test_product_row_norms_match_explicit_BA_and_are_safe_at_zero(dtype, shape, seed, zero_row):
    _skip_without_x64(dtype)
    _, A, B, _ = _arrays(seed, shape, (), dtype)
    if zero_row:
        B = B.at[0].set(0.0)
    n = allora.product_row_norms(A, B)
    An, Bn = _np(A, B)
    assert rel_error(n, np.linalg.norm(Bn @ An, axis=1)) < tol(dtype)
    g = jax.grad(lambda B: allora.product_row_norms(A, B).sum())(B)
    assert np.all(np.isfinite(np.asarray(g)))
    if zero_row:
        assert float(n[0]) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=st.sampled_from(SHAPES), eta=st.sampled_from(ETAS), seed=st.integers(0, 2**16))
def test_c_depends_on_BA_only(dtype, shape, eta, seed):
    """c is unchanged under (B, A) -> (B M, M⁻¹ A) for an invertible M (cond(M) <= e²)."""
    _skip_without_x64(dtype)
    _, A, B, _ = _arrays(seed, shape, (), dtype)
    r = shape[2]
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((r, r)))
    M = Q @ np.diag(np.exp(rng.uniform(-1.0, 1.0, r))) @ np.linalg.qr(rng.standard_normal((r, r)))[0]
    B2 = jnp.asarray(np.asarray(B, np.float64) @ M, dtype)
    A2 = jnp.asarray(np.linalg.solve(M, np.asarray(A, np.float64)), dtype)
    c1, c2 = allora.row_factor(A, B, eta), allora.row_factor(A2, B2, eta)
    ref = _reference(jnp.zeros(shape[1], dtype), A, B, jnp.zeros(shape[0], dtype), eta)["c"]
    assert rel_error(c1, ref) < tol(dtype)
    assert rel_error(c2, c1) < 10 * tol(dtype)
    # and the factors themselves did change (the test is not vacuous)
    assert rel_error(B2, B) > 1e-3


@pytest.mark.parametrize("init", ["init_a", "init_b"])
@pytest.mark.parametrize("eta", ETAS)
def test_at_BA_zero_one_allora_sgd_step_equals_lora_sgd_step_at_lr_eta_times_lb(init, eta):
    """BA = 0 ⇒ c = eta, so ALLoRA at lr l_b moves exactly as LoRA (s = 1) at lr eta·l_b.

    1e-12 relative in float64; with x64 off the same comparison at float32 tolerance.
    """
    dtype = float_dtype()
    W = jax.random.normal(jax.random.key(0), (6, 5), dtype)
    X = jax.random.normal(jax.random.key(1), (16, 5), dtype)
    Y = jax.random.normal(jax.random.key(2), (16, 6), dtype)
    cfg_al = LoraConfig(rank=2, method="allora", scaling="none", eta=eta, init=init)
    cfg_lo = LoraConfig(rank=2, scaling="none", init=init)
    _, p0 = lora.init(jax.random.key(3), W, cfg_al)
    assert float(jnp.max(jnp.abs(p0.B @ p0.A))) == 0.0

    def step(cfg, lr):
        loss = lambda p: 0.5 * jnp.mean(jnp.sum(jnp.square(lora.apply(W, p, X, cfg) - Y), -1))
        opt = optax.sgd(lr)
        upd, _ = opt.update(jax.grad(loss)(p0), opt.init(p0), p0)
        return optax.apply_updates(p0, upd)

    l_b = 0.01
    p_al, p_lo = step(cfg_al, l_b), step(cfg_lo, eta * l_b)
    bound = 1e-12 if x64() else tol(f32=1e-6)
    moved = "B" if init == "init_a" else "A"
    assert rel_error(getattr(p_al, moved), getattr(p0, moved)) > 1e-4   # the step did something
    assert rel_error(p_al.A, p_lo.A) <= bound
    assert rel_error(p_al.B, p_lo.B) <= bound


@pytest.mark.parametrize("method", ["allora", "allora_od", "asf"])
@pytest.mark.parametrize("start", ["both_zero", "B_zero", "one_row_zero"])
def test_no_nan_at_exactly_zero_norm(method, start):
    dtype = float_dtype()
    W = jax.random.normal(jax.random.key(0), (4, 3), dtype)
    X = jax.random.normal(jax.random.key(1), (8, 3), dtype)
    Y = jax.random.normal(jax.random.key(2), (8, 4), dtype)
    A = jax.random.normal(jax.random.key(3), (2, 3), dtype)
    B = jax.random.normal(jax.random.key(4), (4, 2), dtype)
    if start == "both_zero":
        A, B = jnp.zeros_like(A), jnp.zeros_like(B)
    elif start == "B_zero":
        B = jnp.zeros_like(B)
    else:
        B = B.at[1].set(0.0)
    cfg = LoraConfig(rank=2, method=method, scaling="none")
    p = lora.LoraParams(A=A, B=B)
    loss = lambda p: 0.5 * jnp.mean(jnp.sum(jnp.square(lora.apply(W, p, X, cfg) - Y), -1))
    assert np.all(np.isfinite(np.asarray(lora.apply(W, p, X, cfg))))
    for _ in range(4):
        g = jax.grad(loss)(p)
        assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(g))
        p = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
        assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(p))
    if start == "B_zero":   # B must have escaped zero: the steps were not no-ops
        assert float(jnp.max(jnp.abs(p.B))) > 0.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), None, True, np.array([1.0, 2.0]),
                                 "two"])
def test_bad_eta_raises_naming_the_field(bad):
    x, A, B = jnp.ones((2, 3)), jnp.ones((1, 3)), jnp.ones((4, 1))
    with pytest.raises(ValueError, match=r"^eta"):
        allora.branch(x, A, B, eta=bad)
    with pytest.raises(ValueError, match=r"^eta"):
        allora.asf(x, eta=bad)


@pytest.mark.parametrize("bad", ["both ", "AB", "b", None, 1])
def test_unknown_adapt_raises_naming_the_field_and_allowed_values(bad):
    x, A, B = jnp.ones((2, 3)), jnp.ones((1, 3)), jnp.ones((4, 1))
    with pytest.raises(ValueError, match=r"^adapt.*both.*'B'.*'A'"):
        allora.branch(x, A, B, eta=2.0, adapt=bad)


def test_config_rejects_bad_eta_and_adapt():
    for eta in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^eta"):
            LoraConfig(rank=1, method="allora", scaling="none", eta=eta)
    with pytest.raises(ValueError, match=r"^adapt"):
        LoraConfig(rank=1, method="allora", scaling="none", adapt="C")


# -- each switch and variant changes the gradients, as the hand-built reference says ---------------


def _close(a, b, dtype=None):
    return rel_error(a, b) < tol(dtype)


@given(shape=st.sampled_from(SHAPES), eta=st.sampled_from([0.5, 3.0]), seed=st.integers(0, 2**16))
def test_adapt_switch_B_only_and_A_only(shape, eta, seed):
    x, A, B, T = _arrays(seed, shape, (7,), float_dtype())
    ref = _reference(x, A, B, T, eta)
    C, G = np.diag(ref["c"]), ref["G"]
    _, dA_b, dB_b = _grads(x, A, B, T, eta=eta, adapt="B")
    _, dA_a, dB_a = _grads(x, A, B, T, eta=eta, adapt="A")
    assert _close(dB_b, C @ G @ ref["A"].T) and _close(dA_b, ref["B"].T @ G)
    assert _close(dB_a, G @ ref["A"].T) and _close(dA_a, ref["B"].T @ C @ G)
    _, dA, dB = _grads(x, A, B, T, eta=eta)
    assert rel_error(dA_b, dA) > 1e-3 and rel_error(dB_a, dB) > 1e-3   # c != 1: the switch matters


@given(shape=st.sampled_from(SHAPES), eta=st.sampled_from([0.5, 3.0]), seed=st.integers(0, 2**16))
def test_scale_input_grad_scales_only_the_input_gradient(shape, eta, seed):
    x, A, B, T = _arrays(seed, shape, (7,), float_dtype())
    ref = _reference(x, A, B, T, eta)
    dx, dA, dB = _grads(x, A, B, T, eta=eta)
    dx_s, dA_s, dB_s = _grads(x, A, B, T, eta=eta, scale_input_grad=True)
    assert _close(dx_s, (ref["delta"] * ref["c"]) @ ref["M"])
    assert _close(dA_s, dA) and _close(dB_s, dB)
    assert rel_error(dx_s, dx) > 1e-3


@given(shape=st.sampled_from(SHAPES), eta=st.sampled_from(ETAS), seed=st.integers(0, 2**16))
def test_allora_od_uses_a_per_sample_factor_from_the_output(shape, eta, seed):
    x, A, B, T = _arrays(seed, shape, (7,), float_dtype())
    ref = _reference(x, A, B, T, eta)
    c_n = 1.0 / np.sqrt(np.abs(ref["f"]) + 1.0 / eta**2)            # (n, d_out)
    dx, dA, dB = _grads(x, A, B, T, eta=eta, per_sample=True)
    dc = ref["delta"] * c_n
    assert _close(dB, dc.T @ ref["h"])
    assert _close(dA, ref["B"].T @ dc.T @ ref["x"])
    assert _close(dx, ref["dx"])
    _, _, dB_allora = _grads(x, A, B, T, eta=eta)
    assert rel_error(dB, dB_allora) > 1e-3


@functools.partial(jax.jit, static_argnums=3)
def _asf_value_and_grad(p, x, T, cfg):
    return lora.branch(p, x, cfg), jax.grad(lambda p: _loss(lora.branch(p, x, cfg), T))(p)


@given(shape=st.sampled_from(SHAPES), eta=st.sampled_from(ETAS), seed=st.integers(0, 2**16))
def test_asf_changes_the_forward_and_its_gradient_has_the_closed_form(shape, eta, seed):
    """ASF-LoRA: f̃ = f/sqrt(|f|+k), k = 1/eta²; df̃/df = (|f|/2 + k)/(|f| + k)^{3/2}."""
    x, A, B, T = _arrays(seed, shape, (7,), float_dtype())
    cfg = LoraConfig(rank=shape[2], method="asf", scaling="none", eta=eta)
    p = lora.LoraParams(A=A, B=B)
    out, dp = _asf_value_and_grad(p, x, T, cfg)
    ref = _reference(x, A, B, T, eta)
    k, f = 1.0 / eta**2, ref["f"]
    f_t = f / np.sqrt(np.abs(f) + k)
    assert _close(out, f_t)
    assert rel_error(out, f) > 1e-3
    delta_t = T * (1.0 - np.tanh(f_t) ** 2) * (np.abs(f) / 2 + k) / (np.abs(f) + k) ** 1.5
    assert _close(dp.B, delta_t.T @ ref["h"])
    assert _close(dp.A, ref["B"].T @ delta_t.T @ ref["x"])


def test_allora_plus_dropout_changes_gradients_in_train_mode_only():
    """ALLoRA+D (keep < 1): train-mode gradients use the masked input; eval mode is plain ALLoRA."""
    dtype = float_dtype()
    x, A, B, T = _arrays(0, (6, 4, 2), (32,), dtype)
    p = lora.LoraParams(A=A, B=B)
    cfg = LoraConfig(rank=2, method="allora", scaling="none", eta=2.0)
    cfg_d = cfg.replace(keep=0.5)
    key = jax.random.key(7)
    g = lambda cfg, train: jax.grad(lambda p: _loss(lora.branch(p, x, cfg, train=train, key=key), T))(p)
    g_plain, g_d, g_eval = g(cfg, True), g(cfg_d, True), g(cfg_d, False)
    assert rel_error(g_d.B, g_plain.B) > 1e-2
    assert _close(g_eval.B, g_plain.B) and _close(g_eval.A, g_plain.A)
    # train mode equals ALLoRA on the masked input (PEFT's input site), with c from the weights
    mask = lora.dropout_mask(key, x.shape, 0.5, dtype)
    _, dA_ref, dB_ref = _grads(x * mask, A, B, T, eta=2.0)
    assert _close(g_d.B, dB_ref) and _close(g_d.A, dA_ref)


_masked_branch = jax.jit(lambda x, A, B, mask: allora.branch(x, A, B, eta=2.0, bottleneck_mask=mask))
_masked_grads = jax.jit(jax.grad(lambda x, A, B, mask, T: _loss(_masked_branch(x, A, B, mask), T),
                                 argnums=(1, 2)))


@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16))
def test_bottleneck_mask_is_applied_in_forward_and_backward(shape, seed):
    x, A, B, T = _arrays(seed, shape, (7,), float_dtype())
    r = shape[2]
    m = np.asarray(jax.random.bernoulli(jax.random.key(seed + 5), 0.5, (7, r)), np.float64) / 0.5
    mask = jnp.asarray(m, x.dtype)
    dA, dB = _masked_grads(x, A, B, mask, T)
    xn, An, Bn, Tn = _np(x, A, B, T)
    h = (xn @ An.T) * m
    f = h @ Bn.T
    assert _close(_masked_branch(x, A, B, mask), f)
    c = 1.0 / np.sqrt(np.linalg.norm(Bn @ An, axis=1) + 0.25)
    dc = Tn * (1.0 - np.tanh(f) ** 2) * c
    assert _close(dB, dc.T @ h)
    assert _close(dA, ((dc @ Bn) * m).T @ xn)


def test_lora_times_eta_matches_allora_at_zero_and_differs_after():
    """LoRA×eta (fixed s = eta): at BA = 0 its gradients equal ALLoRA's (c = eta); at BA != 0 they differ."""
    dtype = float_dtype()
    x, A, _, T = _arrays(3, (6, 4, 2), (9,), dtype)
    eta = 3.0
    cfg_al = LoraConfig(rank=2, method="allora", scaling="none", eta=eta)
    cfg_le = LoraConfig(rank=2, scaling=eta)
    p0 = lora.LoraParams(A=A, B=jnp.zeros((6, 2), dtype))
    g = lambda cfg, p: jax.grad(lambda p: _loss(lora.branch(p, x, cfg), T))(p)
    assert _close(g(cfg_le, p0).B, g(cfg_al, p0).B)
    p1 = lora.LoraParams(A=A, B=jax.random.normal(jax.random.key(9), (6, 2), dtype))
    assert rel_error(g(cfg_le, p1).B, g(cfg_al, p1).B) > 1e-2
    assert _close(lora.branch(p1, x, cfg_le), eta * lora.branch(p1, x, cfg_al))


# -- transformations --------------------------------------------------------------------------------


def test_works_under_jit_vmap_scan_and_grad():
    dtype = float_dtype()
    x, A, B, T = _arrays(1, (6, 4, 2), (5,), dtype)
    loss = lambda A, B, eta: _loss(allora.branch(x, A, B, eta=eta), T)
    grad = jax.grad(loss, argnums=(0, 1))
    gA, gB = grad(A, B, 2.0)
    jA, jB = jax.jit(grad)(A, B, 2.0)                      # eta traced under jit
    assert _close(jA, gA) and _close(jB, gB)
    # vmap over a batch of factor pairs and over eta
    As = jnp.stack([A, 2 * A, -A])
    Bs = jnp.stack([B, B / 2, 3 * B])
    etas = jnp.asarray([0.5, 2.0, 3.0], dtype)
    vA, vB = jax.vmap(grad)(As, Bs, etas)
    for i in range(3):
        lA, lB = grad(As[i], Bs[i], float(etas[i]))
        assert _close(vA[i], lA) and _close(vB[i], lB)
    # lax.scan of SGD steps equals the Python loop
    def sgd(carry, _):
        A, B = carry
        gA, gB = grad(A, B, 2.0)
        return (A - 0.01 * gA, B - 0.01 * gB), loss(A, B, 2.0)
    (sA, sB), losses = jax.lax.scan(sgd, (A, B), None, length=5)
    lA, lB = A, B
    for _ in range(5):
        (lA, lB), _ = sgd((lA, lB), None)
    assert _close(sA, lA) and _close(sB, lB)
    assert np.all(np.isfinite(np.asarray(losses)))


def _train_ok(model, base, data, steps=60):
    tr = Trainer(model, optimizer="sgd", steps=steps, stride=steps // 3)
    h = tr.run(base, data, {"lr": 0.05}, seed=0)
    loss = np.asarray(h.metrics["train_loss"])
    assert int(h.diverged_step) == -1
    assert loss[-1] < 0.9 * loss[0], loss
    return loss


def test_toy_models_train_with_method_allora_through_trainer():
    cfg = LoraConfig(rank=2, method="allora", scaling="none", eta=2.0)
    t = teacher_student(seed=0, d_in=8, d_out=4, n_train=32, n_test=32, shift_rank=1)
    _train_ok(LinearLoRA(cfg), t.W0, t.data)

    dtype = float_dtype()
    rng = np.random.default_rng(0)
    Ws = tuple(jnp.asarray(np.eye(6) + 0.1 * rng.standard_normal((6, 6)), dtype) for _ in range(2))
    X = jnp.asarray(rng.standard_normal((40, 6)), dtype)
    Y = X @ jnp.asarray(0.5 * rng.standard_normal((6, 6)), dtype)
    _train_ok(MultilinearLoRA(cfg, norm="rms"), Ws, Data(X, Y, X, Y))

    base = init_mlp(jax.random.key(0), (6, 12, 3), dtype)
    labels = jnp.asarray(np.argmax(np.asarray(X) @ rng.standard_normal((6, 3)), axis=1))
    _train_ok(MLPLoRA(cfg), base, Data(X, labels, X, labels), steps=90)


# -- the benchmark's naive reference is the same rule ----------------------------------------------


def test_naive_branch_equals_the_cheap_row_norm_branch():
    x, A, B, T = _arrays(2, (6, 4, 2), (5,), float_dtype())
    g = lambda f: jax.grad(lambda A, B: _loss(f(x, A, B, eta=2.0), T), argnums=(0, 1))(A, B)
    (a1, b1), (a2, b2) = g(allora.branch), g(bench_allora.naive_branch)
    assert _close(a1, a2) and _close(b1, b2)
    case = bench_allora.time_case(16, 2, 4, repeats=1, methods=("lora", "allora_naive"))
    assert set(case["ratio"]) == {"lora", "allora_naive"} and case["ratio"]["lora"] == 1.0


def test_A_gradient_is_not_a_function_of_the_plain_gradients_but_B_gradient_is():
    """Two losses with the same weights and the same plain (∂L/∂A, ∂L/∂B) but different ALLoRA ∂̃L/∂A.

    G' = G + N with N = u vᵀ, Bᵀu = 0 and A v = 0, leaves BᵀG and GAᵀ unchanged, but Bᵀ C N =
    (Bᵀ C u) vᵀ ≠ 0 when the row norms (hence c) differ. ∂̃L/∂B = C (∂L/∂B) is a function of them.
    """
    dtype = float_dtype()
    A = jnp.asarray([[1.0, 0.0]], dtype)                 # r = 1, d_in = 2
    B = jnp.asarray([[1.0], [2.0]], dtype)               # d_out = 2: row norms of BA are 1 and 2
    u, v = np.array([2.0, -1.0]), np.array([0.0, 1.0])  # Bᵀu = 0, A v = 0
    G = np.array([[0.3, -0.7], [1.1, 0.4]])
    X = jnp.eye(2, dtype=dtype)                          # x_n = e_n, so G = Σ δ_n x_nᵀ has columns δ_n

    def grads(Gm, method):
        T = jnp.asarray(Gm.T, dtype)                     # δ_n = G[:, n]; L = Σ_n δ_nᵀ f_n
        cfg = (LoraConfig(rank=1, method="allora", scaling="none", eta=2.0) if method == "allora"
               else LoraConfig(rank=1, scaling="none"))
        return jax.grad(lambda p: jnp.sum(T * lora.branch(p, X, cfg)))(lora.LoraParams(A=A, B=B))

    G2 = G + np.outer(u, v)
    plain1, plain2 = grads(G, "lora"), grads(G2, "lora")
    assert _close(plain1.A, plain2.A) and _close(plain1.B, plain2.B)        # same plain gradients
    al1, al2 = grads(G, "allora"), grads(G2, "allora")
    c = 1.0 / np.sqrt(np.array([1.0, 2.0]) + 0.25)
    expected_gap = (np.asarray(B, np.float64).T @ (c * u)) * v              # Bᵀ C N, non-zero
    assert np.linalg.norm(expected_gap) > 0.1
    assert _close(np.asarray(al2.A) - np.asarray(al1.A), expected_gap[None, :])
    assert _close(al1.B, c[:, None] * np.asarray(plain1.B))
    assert _close(al2.B, c[:, None] * np.asarray(plain2.B))
