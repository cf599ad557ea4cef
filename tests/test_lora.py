"""The LoRA family on one layer: init identity, merge, scales, DoRA, dropout, options, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from toyllora import conventions, lora
from toyllora.config import DROPOUT_SITES, INITS, LoraConfig
from toyllora.testing import float_dtype, rel_error, tol

SHAPES = [(3, 5), (6, 4), (8, 8)]  # (d_out, d_in) buckets keep recompiles few


def _W(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, float_dtype())


def _nonzero(p: lora.LoraParams, seed):
    k1, k2 = jax.random.split(jax.random.key(seed + 1000))
    return lora.LoraParams(A=p.A + 0.3 * jax.random.normal(k1, p.A.shape, p.A.dtype),
                           B=p.B + 0.3 * jax.random.normal(k2, p.B.shape, p.B.dtype), magnitude=p.magnitude)


configs = st.builds(
    lambda init, scaling, rank, dora: LoraConfig(rank=rank, alpha=3.0, scaling=scaling, init=init, dora=dora),
    st.sampled_from(INITS), st.sampled_from(["lora", "rslora", "none", 0.7]), st.integers(1, 3), st.booleans())


@given(cfg=configs, shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16))
def test_output_equals_base_model_at_init_for_every_scheme(cfg, shape, seed):
    W = _W(seed, shape)
    frozen, p = lora.init(jax.random.key(seed), W, cfg)
    x = jax.random.normal(jax.random.key(seed + 1), (4, shape[1]), W.dtype)
    assert rel_error(lora.apply(frozen, p, x, cfg), x @ W.T) < 50 * tol(f32=1e-6, f64=1e-14)


@given(cfg=configs, shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16))
def test_adapter_forward_equals_merged_weight_forward(cfg, shape, seed):
    W = _W(seed, shape)
    frozen, p = lora.init(jax.random.key(seed), W, cfg)
    p = _nonzero(p, seed)
    x = jax.random.normal(jax.random.key(seed + 2), (5, shape[1]), W.dtype)
    merged = lora.merge(frozen, p, cfg)
    assert rel_error(lora.apply(frozen, p, x, cfg), x @ merged.T) < 50 * tol(f32=1e-6, f64=1e-14)


@given(rank=st.integers(1, 64), alpha=st.floats(0.1, 100.0))
def test_scale_modes_match_their_formulas(rank, alpha):
    assert conventions.scale("lora", alpha, rank) == pytest.approx(alpha / rank, rel=1e-15)
    assert conventions.scale("rslora", alpha, rank) == pytest.approx(alpha / math.sqrt(rank), rel=1e-15)
    assert conventions.scale("none", alpha, rank) == 1.0
    assert conventions.scale(2.5, alpha, rank) == 2.5
    ratio = conventions.scale("rslora", alpha, rank) / conventions.scale("lora", alpha, rank)
    assert ratio == pytest.approx(math.sqrt(rank), rel=1e-12)


def test_rslora_branch_is_sqrt_r_times_lora_branch():
    W = _W(0, (6, 6))
    x = jnp.ones((2, 6), W.dtype)
    outs = {}
    for mode in ("lora", "rslora"):
        cfg = LoraConfig(rank=4, alpha=8.0, scaling=mode, init="both")
        _, p = lora.init(jax.random.key(0), W, cfg)
        outs[mode] = lora.branch(p, x, cfg)
    assert rel_error(outs["rslora"], 2.0 * outs["lora"]) < tol(f32=1e-6, f64=1e-14)


def test_dora_at_init_equals_base_and_its_norm_is_detached():
    W = _W(3, (5, 7))
    cfg = LoraConfig(rank=2, dora=True)
    frozen, p = lora.init(jax.random.key(1), W, cfg)
    x = jax.random.normal(jax.random.key(2), (3, 7), W.dtype)
    assert rel_error(lora.apply(frozen, p, x, cfg), x @ W.T) < tol(f32=1e-5, f64=1e-13)
    np.testing.assert_allclose(p.magnitude, jnp.linalg.norm(W, axis=1), rtol=tol(f32=1e-5, f64=1e-12))
    # Detached norm: d/dm of the output is (W'x)/||W'|| with no term through the norm.
    p = _nonzero(p, 0)
    g = jax.grad(lambda m: lora.apply(frozen, lora.LoraParams(p.A, p.B, m), x, cfg).sum())(p.magnitude)
    V = frozen + cfg.s * p.B @ p.A
    expected = (x @ V.T).sum(0) / jnp.linalg.norm(V, axis=1)
    assert rel_error(g, expected) < tol(f32=1e-5, f64=1e-12)


@pytest.mark.parametrize("site", DROPOUT_SITES)
def test_dropout_only_in_train_mode_and_unbiased(site):
    cfg = LoraConfig(rank=2, alpha=2.0, keep=0.7, dropout_site=site, init="both")
    W = _W(5, (4, 6))
    frozen, p = lora.init(jax.random.key(0), W, cfg)
    x = jax.random.normal(jax.random.key(1), (3, 6), W.dtype)
    ref = lora.apply(frozen, p, x, cfg)
    np.testing.assert_array_equal(lora.apply(frozen, p, x, cfg, train=False, key=jax.random.key(9)), ref)
    keys = jax.random.split(jax.random.key(2), 4000)
    outs = jax.vmap(lambda k: lora.apply(frozen, p, x, cfg, train=True, key=k))(keys)
    assert float(jnp.max(jnp.abs(outs[0] - ref))) > 0  # train mode does change the output
    mean, se = outs.mean(0), outs.std(0) / math.sqrt(len(keys))
    z = np.asarray(jnp.abs(mean - ref) / jnp.maximum(se, 1e-12))
    assert z.max() < 5.0  # every entry within 5 standard errors of the no-dropout output


def test_keep_one_is_exactly_no_dropout():
    cfg = LoraConfig(rank=2, keep=1.0, init="both")
    W = _W(1, (4, 6))
    frozen, p = lora.init(jax.random.key(0), W, cfg)
    x = jnp.ones((2, 6), W.dtype)
    np.testing.assert_array_equal(lora.apply(frozen, p, x, cfg, train=True, key=jax.random.key(1)),
                                  lora.apply(frozen, p, x, cfg))


def test_every_option_has_a_visible_effect():
    W = _W(7, (6, 8))
    x = jax.random.normal(jax.random.key(3), (5, 8), W.dtype)
    base = LoraConfig(rank=2, alpha=4.0, init="both")

    def out(cfg, train=False, seed=0):
        frozen, p = lora.init(jax.random.key(seed), W, cfg)
        p = _nonzero(p, 1)
        return lora.apply(frozen, p, x, cfg, train=train, key=jax.random.key(11))

    def grads(cfg):
        frozen, p = lora.init(jax.random.key(0), W, cfg)
        p = _nonzero(p, 1)
        return jax.grad(lambda q: jnp.sum(lora.apply(frozen, q, x, cfg) ** 3))(p)

    def init_of(cfg):
        return lora.init(jax.random.key(0), W, cfg)[1]

    differs = lambda a, b: any(float(jnp.max(jnp.abs(u - v))) > 0 for u, v in
                               zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert differs(out(base), out(base.replace(alpha=5.0)))
    assert differs(out(base), out(base.replace(scaling="rslora")))
    assert differs(out(base), out(base.replace(scaling=0.3)))
    assert differs(out(base), out(base.replace(rank=3)))
    assert differs(out(base.replace(keep=0.5), train=True), out(base, train=True))
    for a, b in (("input", "bottleneck"), ("bottleneck", "output"), ("input", "output")):
        assert differs(out(base.replace(keep=0.5, dropout_site=a), train=True),
                       out(base.replace(keep=0.5, dropout_site=b), train=True))
    for a, b in (("init_a", "init_b"), ("init_a", "both"), ("both", "pissa")):
        assert differs(init_of(base.replace(init=a)), init_of(base.replace(init=b)))
    assert differs(init_of(base.replace(init_dist="gaussian")), init_of(base))
    assert differs(init_of(base.replace(init_scale=2.0)), init_of(base))
    assert differs(out(base.replace(dora=True)), out(base))
    al = base.replace(scaling="none", method="allora")
    assert differs(grads(al), grads(base.replace(scaling="none")))
    assert differs(grads(al.replace(eta=1.0)), grads(al))
    assert differs(grads(al.replace(adapt="B")), grads(al))
    assert differs(grads(al.replace(method="allora_od")), grads(al))
    assert differs(out(al.replace(method="asf")), out(al))


@pytest.mark.parametrize("kwargs, field", [
    (dict(rank=0), "rank"), (dict(rank=2.5), "rank"), (dict(keep=0.0), "keep"), (dict(keep=1.5), "keep"),
    (dict(keep=float("nan")), "keep"), (dict(dropout_site="middle"), "dropout_site"),
    (dict(init="xavier"), "init"), (dict(scaling="sqrt"), "scaling"), (dict(scaling=float("inf")), "scaling"),
    (dict(method="lorax"), "method"), (dict(eta=2.0), "eta"), (dict(adapt="both"), "adapt"),
    (dict(method="allora", scaling="lora"), "scaling"), (dict(method="allora", scaling="none", eta=-1.0), "eta"),
    (dict(method="allora", scaling="none", adapt="C"), "adapt"), (dict(init_dist="laplace"), "init_dist"),
    (dict(init="pissa", init_scale=2.0), "init_dist/init_scale"), (dict(method="asf", scaling="none", dora=True), "dora"),
])
def test_bad_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        LoraConfig(**kwargs)


def test_rank_larger_than_layer_and_shape_mismatch_raise():
    W = _W(0, (3, 5))
    with pytest.raises(ValueError, match="^rank: must be <= min"):
        lora.init(jax.random.key(0), W, LoraConfig(rank=4))
    frozen, p = lora.init(jax.random.key(0), W, LoraConfig(rank=2))
    with pytest.raises(ValueError, match="^x: last dimension"):
        lora.apply(frozen, p, jnp.ones((2, 4)), LoraConfig(rank=2))
    with pytest.raises(ValueError, match="^key"):
        lora.apply(frozen, p, jnp.ones((2, 5)), LoraConfig(rank=2, keep=0.5), train=True)
    with pytest.raises(ValueError, match="^method"):
        lora.merge(frozen, p, LoraConfig(rank=2, method="asf", scaling="none"))


def test_factor_labels_select_by_structure():
    p = (lora.LoraParams(jnp.ones((1, 2)), jnp.ones((2, 1))), lora.LoraParams(jnp.ones((1, 2)), jnp.ones((2, 1)), jnp.ones(2)))
    labels = lora.factor_labels(p)
    assert labels[0].A == "A" and labels[0].B == "B" and labels[0].magnitude is None
    assert labels[1].magnitude == "magnitude"
    assert jax.tree.structure(labels) == jax.tree.structure(p)
