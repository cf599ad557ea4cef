"""The JAX side of ``toyllora bench``: the multilinear LoRA toys as timed callables, and their matmul ceiling.

The toy: ``L = 4`` layers ``W_l + B_l A_l`` (``alpha = r``, so ``s = 1``), full batch, Adam at 1e-3, MSE,
float32. Each candidate is a callable that blocks until its result is ready, with the number of seed-steps
one call performs (``units``), so that times are compared per seed-step:

* ``jax_scan``: one seed, ``steps`` steps as one compiled ``lax.scan`` (:meth:`toyllora.train.Trainer.run`);
* ``jax_vmapped``: ``seeds`` seeds × ``steps`` steps as one vmapped call (:meth:`Trainer.sweep`);
* ``jax_loop``: a Python loop around a jitted step (the usual hand-written pattern);
* ``matmul``: a chain of same-shape ``(n, d) @ (d, d)`` float32 matmuls inside one compiled loop, the
  ceiling that the toy's GFLOP/s is compared with (no dispatch between matmuls, as in the toy's scan).

Example:
    >>> c = toy_candidates("small", fast=True)
    >>> sorted(c["fns"]), c["units"]["jax_vmapped"] == c["steps"] * c["seeds"]   # fast: no Python loop
    (['jax_scan', 'jax_vmapped'], True)
    >>> flops_per_step(d=32, n=64, r=4, layers=1)   # forward only: the first layer needs no input gradient
    212992
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import models
from toyllora.config import LoraConfig
from toyllora.data import Data
from toyllora.train import Trainer

LAYERS = 4
SIZES = {"small": dict(d=32, n=64, r=4), "medium": dict(d=256, n=512, r=8)}
# (steps, seeds of the vmapped sweep) per toy, full and fast
BUDGETS = {("small", False): (200, 64), ("small", True): (50, 16),
           ("medium", False): (50, 8), ("medium", True): (10, 4)}
LR = 1e-3
PRECISIONS = ("default", "highest", "bfloat16")   # jax.default_matmul_precision values timed on a GPU


def toy_arrays(d: int, n: int, layers: int = LAYERS, seed: int = 0) -> dict:
    """The toy's float32 numpy arrays: ``base`` (``layers`` matrices ``(d, d)``), ``X`` and ``Y (n, d)``."""
    rng = np.random.default_rng(seed)
    base = tuple((rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32) for _ in range(layers))
    return {"base": base, "X": rng.standard_normal((n, d)).astype(np.float32),
            "Y": rng.standard_normal((n, d)).astype(np.float32)}


def toy_model(r: int):
    return models.MultilinearLoRA(LoraConfig(rank=r, alpha=float(r)))


def flops_per_step(d: int, n: int, r: int, layers: int = LAYERS) -> int:
    """Matmul FLOPs of one training step (W frozen, so no weight gradient for it).

    Forward per layer ``2nd² + 4ndr`` (``x Wᵀ``, ``x Aᵀ``, ``h Bᵀ``); backward per layer ``6ndr`` for ``g B``,
    ``∂B`` and ``∂A``, and for every layer but the first (whose input is data) the input gradient
    ``2nd² + 2ndr``.
    """
    forward = layers * (2 * n * d * d + 4 * n * d * r)
    backward = layers * 6 * n * d * r + (layers - 1) * (2 * n * d * d + 2 * n * d * r)
    return forward + backward


def _block(tree):
    return jax.block_until_ready(tree)


def _data(arrays) -> tuple:
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    X, Y = f32(arrays["X"]), f32(arrays["Y"])
    return tuple(f32(W) for W in arrays["base"]), Data(X, Y, X[:8], Y[:8])


def _jitted_step(model, frozen, data):
    opt = optax.adam(LR)

    @jax.jit
    def step(params, state, key):
        loss, g = jax.value_and_grad(
            lambda p: models.loss(model, frozen, p, data.X, data.Y, train=True, key=key))(params)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state, loss

    return step, opt


def xla_flops(jitted, *args) -> float | None:
    """FLOPs of one call as counted by XLA's cost analysis (None when the backend does not say)."""
    try:
        cost = jitted.lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - cost analysis is optional on some backends
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def toy_candidates(name: str, fast: bool = False, *, sizes: dict | None = None) -> dict:
    """The JAX candidates for toy ``name`` (``small`` or ``medium``): compiled and warmed, ready to time.

    Returns ``{"fns", "units", "steps", "seeds", "compile_s", "flops_per_step", "xla_flops_per_step",
    "arrays", **size}``; ``fns[k]()`` blocks, ``units[k]`` is its number of seed-steps.
    """
    sz = dict((sizes or SIZES)[name])
    d, n, r = sz["d"], sz["n"], sz["r"]
    steps, seeds = BUDGETS[(name, bool(fast))]
    arrays = toy_arrays(d, n)
    base, data = _data(arrays)
    model = toy_model(r)
    tr = Trainer(model, optimizer="adam", steps=steps, stride=steps)
    hp = {"lr": LR}
    t0 = time.perf_counter()
    _block(tr.run(base, data, hp, seed=0))
    compile_s = time.perf_counter() - t0
    lr_grid = {"lr": np.full(1, LR)}
    _block(tr.sweep(base, data, lr_grid, seeds))

    frozen, params = model.init(jax.random.key(0), base)
    step, opt = _jitted_step(model, frozen, data)
    state = opt.init(params)
    key = jax.random.key(0)
    if not fast:
        _block(step(params, state, key))
    keys = [jax.random.fold_in(key, t) for t in range(steps)]

    def loop():
        p, s = params, state
        for k in keys:
            p, s, _ = step(p, s, k)
        _block(p)

    fns = {"jax_scan": lambda: _block(tr.run(base, data, hp, seed=1)),
           "jax_vmapped": lambda: tr.sweep(base, data, lr_grid, seeds),   # returns numpy: already blocked
           "jax_loop": loop}
    units = {"jax_scan": steps, "jax_vmapped": steps * seeds, "jax_loop": steps}
    if fast:   # the smoke run skips the Python-loop pattern (one more compile, no aim depends on it)
        del fns["jax_loop"], units["jax_loop"]
    return {**sz, "layers": LAYERS, "steps": steps, "seeds": seeds, "fns": fns, "units": units,
            "compile_s": compile_s, "flops_per_step": flops_per_step(d, n, r),
            "xla_flops_per_step": None if fast else xla_flops(step, params, state, key), "arrays": arrays}


def matmul_chain(n: int, d: int, k: int, dtype=jnp.float32):
    """A callable running ``k`` chained ``(n, d) @ (d, d)`` matmuls in one compiled loop, and its FLOPs.

    ``W`` is orthogonal, so the values stay of order one however long the chain.

    >>> fn, flops = matmul_chain(4, 3, k=2)
    >>> fn() is None, flops
    (True, 144)
    """
    rng = np.random.default_rng(0)
    W = jnp.asarray(np.linalg.qr(rng.standard_normal((d, d)))[0], dtype)
    x = jnp.asarray(rng.standard_normal((n, d)), dtype)
    f = jax.jit(lambda x, W: jax.lax.fori_loop(0, k, lambda _, h: h @ W, x))
    _block(f(x, W))

    def run():
        _block(f(x, W))

    return run, 2 * n * d * d * k


def matmul_1024() -> float:
    """GFLOP/s of a jitted float32 1024³ matmul (a machine reference, median of 5)."""
    a = jnp.ones((1024, 1024), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    _block(f(a))
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        _block(f(a))
        ts.append(time.perf_counter() - t0)
    return 2 * 1024 ** 3 / float(np.median(ts)) / 1e9


def precision_candidates(fast: bool = False, *, size: dict | None = None,
                         precisions=PRECISIONS) -> dict:
    """The medium toy's scan and its matmul chain under each ``jax.default_matmul_precision``, plus the
    chain with bfloat16 inputs: the bf16-matmul variants that the bench times when a GPU is present.

    Runs on any backend (on a CPU, bf16 is emulated and slow); returns ``{"fns", "units", "flops"}`` where
    ``units`` counts steps (toy) or matmuls (chains) and ``flops`` is per unit.
    """
    sz = dict(size or SIZES["medium"])
    d, n, r = sz["d"], sz["n"], sz["r"]
    steps = BUDGETS[("medium", bool(fast))][0]
    base, data = _data(toy_arrays(d, n))
    tr = Trainer(toy_model(r), optimizer="adam", steps=steps, stride=steps)
    k = 2 * steps
    fns, units, flops = {}, {}, {}
    for p in precisions:
        ctx = lambda p=p: jax.default_matmul_precision(p)   # part of jit's cache key: compiled per precision

        def scan(ctx=ctx):
            with ctx():
                _block(tr.run(base, data, {"lr": LR}, seed=1))

        with ctx():
            chain, _ = matmul_chain(n, d, k)

        def mm(ctx=ctx, chain=chain):
            with ctx():
                chain()

        scan()
        fns[f"toy_{p}"], units[f"toy_{p}"], flops[f"toy_{p}"] = scan, steps, flops_per_step(d, n, r)
        fns[f"matmul_{p}"], units[f"matmul_{p}"], flops[f"matmul_{p}"] = mm, k, 2 * n * d * d
    chain, _ = matmul_chain(n, d, k, dtype=jnp.bfloat16)
    fns["matmul_bf16_inputs"], units["matmul_bf16_inputs"], flops["matmul_bf16_inputs"] = chain, k, 2 * n * d * d
    return {**sz, "steps": steps, "fns": fns, "units": units, "flops": flops}


def backend_info() -> dict:
    """The JAX backend, its devices' kinds and the default float dtype (nothing here assumes a CPU)."""
    devs = jax.devices()
    return {"backend": jax.default_backend(), "device_kinds": sorted({d.device_kind for d in devs}),
            "devices": [str(d) for d in devs], "device_count": len(devs),
            "process_count": jax.process_count(), "default_float": str(jnp.zeros(()).dtype),
            "x64": bool(jax.config.jax_enable_x64)}
