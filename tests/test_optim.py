"""The optimizer-shaped baselines: LoRA+, the Riemannian preconditioner, scaled GD and scaled AdamW.

Includes a port of optax's contract test for new optimizers (optax/contrib/_common_test.py): accepts extra
args, no recompilation on the second call, same result under ``inject_hyperparams``, dtype kept (bf16, f32),
converges under ``lax.scan``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, strategies as st

from toyllora import optim
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.lora import LoraParams
from toyllora.models import LinearLoRA
from toyllora.testing import float_dtype, rel_error, tol, x64
from toyllora.train import Trainer, grid, make_optimizer

# (name, factory, kwargs): every alias under the contract test
OPTIMIZERS = [
    ("lora_plus_sgd", optim.lora_plus, dict(learning_rate=0.05, ratio=4.0, optimizer="sgd")),
    ("lora_plus_momentum", optim.lora_plus, dict(learning_rate=0.02, ratio=4.0, optimizer="momentum")),
    ("lora_plus_adam", optim.lora_plus, dict(learning_rate=0.01, ratio=4.0)),
    ("lora_plus_adamw", optim.lora_plus, dict(learning_rate=0.01, ratio=4.0, optimizer="adamw",
                                              weight_decay=1e-5)),
    ("scaled_gd", optim.scaled_gd, dict(learning_rate=0.3)),
    ("scaled_adamw", optim.scaled_adamw, dict(learning_rate=0.02, weight_decay=1e-5)),
]
IDS = [o[0] for o in OPTIMIZERS]
SHAPES = [(6, 5, 2), (8, 8, 3), (5, 7, 4)]   # (d_out, d_in, r)


def _problem(dtype=jnp.float32, seed=0, d=6, r=2):
    """A LoRA factorization target ``BA ≈ D`` (rank r) plus an ordinary leaf, from A random, B = 0."""
    rng = np.random.default_rng(seed)
    D = jnp.asarray(rng.standard_normal((d, r)) @ rng.standard_normal((r, d)) / np.sqrt(d), dtype)
    b_star = jnp.asarray(rng.standard_normal(3), dtype)
    p0 = {"lora": LoraParams(A=jnp.asarray(rng.standard_normal((r, d)) / np.sqrt(d), dtype),
                             B=jnp.zeros((d, r), dtype)),
          "bias": jnp.zeros(3, dtype)}

    def loss(p):
        return (0.5 * jnp.sum(jnp.square(p["lora"].B @ p["lora"].A - D))
                + 0.5 * jnp.sum(jnp.square(p["bias"] - b_star)))

    return p0, loss


def _grads_tree(dtype=jnp.float32):
    p0, loss = _problem(dtype)
    p = jax.tree.map(lambda a: a + jnp.asarray(0.1, dtype), p0)    # B != 0: every branch does work
    return p, jax.grad(loss)(p)


def _tree_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=rtol)


# -- optax's contract test ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,factory,kwargs", OPTIMIZERS, ids=IDS)
def test_accepts_extra_args(name, factory, kwargs):
    opt = factory(**kwargs)
    p, g = _grads_tree()
    u, _ = opt.update(g, opt.init(p), p, loss=jnp.asarray(1.0), some_other_arg="x")
    assert jax.tree.structure(u) == jax.tree.structure(p)


@pytest.mark.parametrize("name,factory,kwargs", OPTIMIZERS, ids=IDS)
def test_no_recompilation_on_second_call(name, factory, kwargs):
    opt = factory(**kwargs)
    p, g = _grads_tree()
    update = jax.jit(opt.update)
    state = opt.init(p)
    u, state = update(g, state, p)
    p = optax.apply_updates(p, u)
    update(g, state, p)
    assert update._cache_size() == 1


@pytest.mark.parametrize("name,factory,kwargs", OPTIMIZERS, ids=IDS)
def test_same_result_under_inject_hyperparams(name, factory, kwargs):
    opt = factory(**kwargs)
    opt_inject = optax.inject_hyperparams(factory)(**kwargs)
    p, g = _grads_tree()
    state, state_inject = opt.init(p), opt_inject.init(p)
    for _ in range(2):
        u, state = opt.update(g, state, p)
        u_inject, state_inject = opt_inject.update(g, state_inject, p)
        _tree_close(u_inject, u, rtol=1e-5)
        _tree_close(state_inject.inner_state, state, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("name,factory,kwargs", OPTIMIZERS, ids=IDS)
def test_dtype_kept(name, factory, kwargs, dtype):
    opt = factory(**kwargs)
    p, g = _grads_tree(dtype)
    state = opt.init(p)
    for _ in range(2):
        u, state = opt.update(g, state, p)
        p = optax.apply_updates(p, u)
    for leaf in jax.tree.leaves(u) + jax.tree.leaves(p):
        assert leaf.dtype == dtype
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.ndim > 0:
            assert leaf.dtype == dtype
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(p))


@pytest.mark.parametrize("name,factory,kwargs", OPTIMIZERS, ids=IDS)
def test_converges_under_lax_scan(name, factory, kwargs):
    opt = factory(**kwargs)
    p0, loss = _problem()

    def step(carry, _):
        p, s = carry
        l, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), l

    (p, _), losses = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=1000))(p0)
    assert float(loss(p)) < 1e-4 * float(losses[0]), (float(losses[0]), float(loss(p)))


# -- the preconditioner -----------------------------------------------------------------------------


def _skip_without_x64(dtype):
    if jnp.dtype(dtype) == jnp.float64 and not x64():
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@given(shape=st.sampled_from(SHAPES), delta=st.sampled_from([1e-6, 1e-2, 1.0]), seed=st.integers(0, 2**16))
def test_preconditioner_matches_hand_built_inverses(dtype, shape, delta, seed):
    """(BᵀB+δI)⁻¹ gA and gB (AAᵀ+δI)⁻¹ against float64 solves; tolerance ∝ eps(dtype) × condition number."""
    _skip_without_x64(dtype)
    d_out, d_in, r = shape
    rng = np.random.default_rng(seed)
    A, B, gA, gB = (rng.standard_normal(s) for s in [(r, d_in), (d_out, r), (r, d_in), (d_out, r)])
    p = LoraParams(A=jnp.asarray(A, dtype), B=jnp.asarray(B, dtype))
    g = LoraParams(A=jnp.asarray(gA, dtype), B=jnp.asarray(gB, dtype))
    t = optim.precondition_lora_factors(delta)
    u, _ = t.update(g, t.init(p), p)
    A, B, gA, gB = (np.asarray(a, np.float64) for a in (p.A, p.B, g.A, g.B))   # the rounded inputs
    MB, MA = B.T @ B + delta * np.eye(r), A @ A.T + delta * np.eye(r)
    eps = float(jnp.finfo(dtype).eps)
    assert rel_error(u.A, np.linalg.solve(MB, gA)) < 100 * eps * np.linalg.cond(MB)
    assert rel_error(u.B, np.linalg.solve(MA, gB.T).T) < 100 * eps * np.linalg.cond(MA)
    assert u.A.dtype == dtype and u.B.dtype == dtype


def test_preconditioner_is_safe_at_B_zero_and_at_both_zero():
    dtype = float_dtype()
    t = optim.precondition_lora_factors(1e-6)
    A = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5)), dtype)
    g = LoraParams(A=jnp.zeros((2, 5), dtype), B=jnp.ones((4, 2), dtype))   # ∂L/∂A = 0 at B = 0
    u, _ = t.update(g, t.init(None), LoraParams(A=A, B=jnp.zeros((4, 2), dtype)))
    assert float(jnp.max(jnp.abs(u.A))) == 0.0
    assert np.all(np.isfinite(np.asarray(u.B)))
    zero = LoraParams(A=jnp.zeros((2, 5), dtype), B=jnp.zeros((4, 2), dtype))
    g = LoraParams(A=jnp.ones((2, 5), dtype), B=jnp.ones((4, 2), dtype))
    u, _ = t.update(g, t.init(None), zero)
    assert rel_error(u.A, np.ones((2, 5)) / 1e-6) < tol(f32=1e-6)    # exactly g / δ
    assert rel_error(u.B, np.ones((4, 2)) / 1e-6) < tol(f32=1e-6)


def test_preconditioner_pairs_each_A_with_its_own_B_and_leaves_other_leaves_untouched():
    dtype = float_dtype()
    rng = np.random.default_rng(1)
    arr = lambda *s: jnp.asarray(rng.standard_normal(s), dtype)
    params = {"layers": (LoraParams(A=arr(2, 3), B=arr(4, 2), magnitude=arr(4)),
                         LoraParams(A=arr(2, 4), B=arr(5, 2))),
              "head": arr(3, 3), "scale": arr()}
    grads = jax.tree.map(lambda a: jnp.ones_like(a), params)
    t = optim.precondition_lora_factors(1e-3)
    u, _ = t.update(grads, t.init(params), params)
    for i in range(2):
        A, B = (np.asarray(a, np.float64) for a in (params["layers"][i].A, params["layers"][i].B))
        gA, gB = np.ones(A.shape), np.ones(B.shape)
        assert rel_error(u["layers"][i].A, np.linalg.solve(B.T @ B + 1e-3 * np.eye(2), gA)) < tol(f32=1e-4)
        assert rel_error(u["layers"][i].B, gB @ np.linalg.inv(A @ A.T + 1e-3 * np.eye(2))) < tol(f32=1e-4)
    assert np.array_equal(u["layers"][0].magnitude, grads["layers"][0].magnitude)
    assert u["layers"][1].magnitude is None
    assert np.array_equal(u["head"], grads["head"]) and np.array_equal(u["scale"], grads["scale"])


def test_scaled_gd_and_scaled_adamw_are_the_preconditioned_steps():
    p, g = _grads_tree(float_dtype())
    A, B = (np.asarray(a, np.float64) for a in (p["lora"].A, p["lora"].B))
    r, delta, lr = A.shape[0], 1e-2, 0.1
    pre = {"lora": LoraParams(A=np.linalg.solve(B.T @ B + delta * np.eye(r), np.asarray(g["lora"].A)),
                              B=np.asarray(g["lora"].B) @ np.linalg.inv(A @ A.T + delta * np.eye(r))),
           "bias": np.asarray(g["bias"])}
    opt = optim.scaled_gd(lr, delta=delta)
    u, _ = opt.update(g, opt.init(p), p)
    _tree_close(u, jax.tree.map(lambda a: -lr * a, pre), rtol=tol(f32=1e-4))
    # scaled AdamW = optax.adamw fed the preconditioned gradient (two steps, at the same params)
    opt, ref = optim.scaled_adamw(lr, delta=delta, weight_decay=0.1), optax.adamw(lr, weight_decay=0.1)
    s, s_ref = opt.init(p), ref.init(p)
    pre = jax.tree.map(lambda a: jnp.asarray(a, float_dtype()), pre)
    for _ in range(2):
        u, s = opt.update(g, s, p)
        u_ref, s_ref = ref.update(pre, s_ref, p)
        _tree_close(u, u_ref, rtol=tol(f32=1e-4))


def test_preconditioner_changes_the_trajectory():
    """Scaled GD is not plain GD: B's first step at B = 0 is divided by (AAᵀ + δI)."""
    p0, loss = _problem()
    g = jax.grad(loss)(p0)
    u_s, _ = optim.scaled_gd(0.1).update(g, optim.scaled_gd(0.1).init(p0), p0)
    u_p, _ = optax.sgd(0.1).update(g, optax.sgd(0.1).init(p0), p0)
    assert rel_error(u_s["lora"].B, u_p["lora"].B) > 1e-2
    _tree_close(u_s["bias"], u_p["bias"], rtol=1e-6)


# -- LoRA+ --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.0, 4.0, 16.0])
def test_lora_plus_sgd_gives_B_ratio_times_the_learning_rate(ratio):
    p, g = _grads_tree(float_dtype())
    opt = optim.lora_plus(0.1, ratio=ratio, optimizer="sgd")
    u, _ = opt.update(g, opt.init(p), p)
    _tree_close(u["lora"].A, -0.1 * g["lora"].A, rtol=1e-6)
    _tree_close(u["lora"].B, -0.1 * ratio * g["lora"].B, rtol=1e-6)
    _tree_close(u["bias"], -0.1 * g["bias"], rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_lora_plus_equals_partitioned_base_optimizer(optimizer):
    """Same steps as ``optax.partition`` with learning rate ``ratio · lr`` on B (Trainer's ``b_ratio``)."""
    p, g = _grads_tree(float_dtype())
    hp = {"lr": 0.01, "b_ratio": 16.0}
    if optimizer == "adamw":
        hp["weight_decay"] = 0.1
    ref = make_optimizer(optimizer, hp)
    opt = optim.lora_plus(0.01, ratio=16.0, optimizer=optimizer, weight_decay=hp.get("weight_decay", 1e-4))
    s, s_ref = opt.init(p), ref.init(p)
    for _ in range(3):
        u, s = opt.update(g, s, p)
        u_ref, s_ref = ref.update(g, s_ref, p)
        _tree_close(u, u_ref, rtol=tol(f32=1e-5))
        p = optax.apply_updates(p, u)


@pytest.mark.parametrize("call,field", [
    (lambda: optim.lora_plus(0.1, ratio=0.0), "ratio"),
    (lambda: optim.lora_plus(0.1, ratio=float("nan")), "ratio"),
    (lambda: optim.scale_by_lora_plus(-2.0), "ratio"),
    (lambda: optim.lora_plus(0.1, optimizer="lion"), "optimizer"),
    (lambda: optim.precondition_lora_factors(0.0), "delta"),
    (lambda: optim.scaled_gd(0.1, delta=float("inf")), "delta"),
    (lambda: optim.scaled_adamw(0.1, delta=-1.0), "delta"),
    (lambda: optim.scaled_adamw(0.1, weight_decay=-1.0), "weight_decay"),
])
def test_bad_input_raises_naming_the_field(call, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        call()


def test_preconditioner_without_params_raises():
    t = optim.precondition_lora_factors()
    p, g = _grads_tree()
    with pytest.raises(ValueError, match=r"^params"):
        t.update(g, t.init(p))


# -- inside the Trainer: traced hyper-parameters under vmap -------------------------------------------


def test_trainer_sweep_with_traced_hyperparameters_matches_single_runs():
    """``Trainer(optimizer=lambda hp: optim.scaled_gd(hp["lr"], ...))``: lr and δ traced under vmap."""
    t = teacher_student(seed=0, d_in=8, d_out=4, n_train=32, n_test=32, shift_rank=1)
    factory = lambda hp: optim.scaled_gd(hp["lr"], delta=hp["delta"])
    tr = Trainer(LinearLoRA(LoraConfig(rank=2, alpha=2.0)), optimizer=factory, steps=40, stride=20)
    g = grid(lr=[0.02, 0.1], delta=[1e-4])
    hs = tr.sweep(t.W0, t.data, g, seeds=[0])
    assert np.all(np.asarray(hs.diverged_step) == -1)
    losses = np.asarray(hs.metrics["train_loss"])[:, 0]
    assert np.all(losses[:, -1] < losses[:, 0])
    assert rel_error(losses[0], losses[1]) > 1e-3            # the hyper-parameter mattered
    h = tr.run(t.W0, t.data, {k: v[1] for k, v in g.items()}, seed=0)
    assert rel_error(h.metrics["train_loss"], losses[1]) < tol(f32=1e-4)


@pytest.mark.parametrize("factory", [lambda r: optim.lora_plus(0.1, ratio=r, optimizer="sgd"),
                                     lambda r: optim.scaled_adamw(0.1, delta=r * 1e-3)])
def test_hyperparameters_can_be_traced_under_vmap(factory):
    p, g = _grads_tree()
    values = jnp.asarray([1.0, 4.0, 16.0])

    def first_update(v):
        opt = factory(v)
        return opt.update(g, opt.init(p), p)[0]

    batched = jax.jit(jax.vmap(first_update))(values)
    for i, v in enumerate([1.0, 4.0, 16.0]):
        _tree_close(jax.tree.map(lambda a: a[i], batched), first_update(v), rtol=tol(jnp.float32, f32=1e-5))
