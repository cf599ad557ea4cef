"""Toy models: init identity, finite-difference gradients, full fine-tuning reference, options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from toyllora import models
from toyllora.config import LoraConfig
from toyllora.testing import float_dtype, rel_error, tol, x64


def _bases(seed=0, d=5):
    k = jax.random.split(jax.random.key(seed), 4)
    dt = float_dtype()
    return {
        "linear": jax.random.normal(k[0], (3, d), dt),
        "multilinear": tuple(jax.random.normal(kk, (d, d), dt) / jnp.sqrt(d) for kk in jax.random.split(k[1], 3)),
        "mlp": models.init_mlp(k[2], (d, 6, 4)),
    }


def _model(kind, cfg, norm=None):
    return {"linear": models.LinearLoRA(cfg), "multilinear": models.MultilinearLoRA(cfg, norm=norm),
            "mlp": models.MLPLoRA(cfg)}[kind]


def _targets(kind, X):
    if kind == "mlp":
        return jnp.arange(X.shape[0]) % 4
    return jnp.sin(X[:, :3]) if kind == "linear" else jnp.cos(X)


@pytest.mark.parametrize("kind", ["linear", "multilinear", "mlp"])
@pytest.mark.parametrize("init", ["init_a", "init_b", "pissa", "both"])
def test_output_equals_base_model_at_init(kind, init):
    base = _bases()[kind]
    cfg = LoraConfig(rank=2, alpha=4.0, init=init)
    X = jax.random.normal(jax.random.key(1), (7, 5), float_dtype())
    full = _model(kind, None)
    f0, p0 = full.init(jax.random.key(0), base)
    ref = full.apply(f0, p0, X)
    m = _model(kind, cfg)
    frozen, params = m.init(jax.random.key(2), base)
    assert rel_error(m.apply(frozen, params, X), ref) < 20 * tol(f32=1e-6, f64=1e-14)


@pytest.mark.parametrize("kind", ["linear", "multilinear", "mlp"])
@pytest.mark.parametrize("finetune", ["lora", "dropout", "dora", "full"])
def test_gradients_agree_with_finite_differences(kind, finetune):
    cfg = {"lora": LoraConfig(rank=2, init="both"), "dropout": LoraConfig(rank=2, init="both", keep=0.8,
           dropout_site="bottleneck"), "dora": LoraConfig(rank=2, init="both", dora=True), "full": None}[finetune]
    m = _model(kind, cfg, norm="rms" if kind == "multilinear" else None)
    frozen, params = m.init(jax.random.key(3), _bases(1)[kind])
    X = jax.random.normal(jax.random.key(4), (6, 5), float_dtype())
    Y = _targets(kind, X)
    key = jax.random.key(5)  # a fixed dropout mask: the loss is a deterministic function of params
    f = lambda p: models.loss(m, frozen, p, X, Y, train=True, key=key)
    if finetune == "dora":  # PEFT's DoRA detaches the norm: compare with autodiff of the detached form only
        f = lambda p: models.loss(m, frozen, jax.tree.map(lambda a: a, p), X, Y, train=True, key=key)
        params = jax.tree.map(lambda a: a, params)
        grads = jax.grad(f)(params)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
        return
    eps, rtol = (1e-6, 1e-5) if x64() else (1e-2, 5e-2)
    check_grads(f, (params,), order=1, modes=["rev"], eps=eps, atol=rtol, rtol=rtol)


def test_multilinear_norm_option_changes_output_and_rejects_unknown():
    base = _bases()["multilinear"]
    X = 3.0 * jax.random.normal(jax.random.key(0), (4, 5), float_dtype())
    outs = {}
    for norm in (None, "rms", "layer"):
        m = models.MultilinearLoRA(LoraConfig(rank=2), norm=norm)
        fr, p = m.init(jax.random.key(1), base)
        outs[norm] = m.apply(fr, p, X)
    assert rel_error(outs["rms"], outs[None]) > 1e-3 and rel_error(outs["layer"], outs["rms"]) > 1e-3
    with pytest.raises(ValueError, match="^norm"):
        models.MultilinearLoRA(LoraConfig(rank=2), norm="batch")


def test_rms_norm_removes_the_scale_of_lower_layers():
    h = jax.random.normal(jax.random.key(0), (3, 8), float_dtype())
    assert rel_error(models.normalize(10.0 * h, "rms"), models.normalize(h, "rms")) < 1e-5  # eps = 1e-6 inside


def test_weights_are_the_merged_weights():
    base = _bases()["multilinear"]
    m = models.MultilinearLoRA(LoraConfig(rank=2, init="both"))
    fr, p = m.init(jax.random.key(1), base)
    X = jax.random.normal(jax.random.key(2), (4, 5), float_dtype())
    h = X
    for W in m.weights(fr, p):
        h = h @ W.T
    assert rel_error(h, m.apply(fr, p, X)) < tol(f32=1e-5, f64=1e-12)
