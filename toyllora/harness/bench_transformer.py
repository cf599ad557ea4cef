"""Throughput of a LoRA fine-tuning sweep of the transformer: one compiled, vmapped ``Trainer.sweep``.

Measures, for :class:`toyllora.models.TransformerLoRA` (the transfer rung's model of record,
``toyllora.claims.transfer._common.ARCH``; LoRA r = 8 on q and v, Adam, mini-batches of 32
sequences of 16 tokens, float32, the shifted mixture of :mod:`toyllora.data.sequences`):

* ``compile_s``: first sweep call minus a second, identical one (tracing + XLA compilation);
* ``run_steps_per_s``: optimizer steps per second summed over all runs of the sweep (grid × seeds);
* ``gflops``: achieved GFLOP/s, from XLA's cost analysis of one training step (forward, backward and
  update of one run; the two metric evaluations per run are not counted, so this is a lower bound);
* ``matmul_gflops`` and ``share``: a plain jitted float32 matmul of the step's largest shape
  ``(runs · batch · T, width) @ (width, mlp)``, and the share of its GFLOP/s that the sweep reaches.

Run: ``python -m toyllora.harness.bench_transformer [--fast]`` (full, 8 runs × 100 steps: about 80 s of CPU
time on 2 cores, most of it the compile and the two sweeps; fast: about 25 s).

Measured on the shared 2-core CPU machine (load average 6–9, so wall times are inflated), 12 runs × 200
steps of the default model: compile 45 s, 14 run-steps/s, 10.7 GFLOP/s = 62 % of the same-shape matmul
(17.3 GFLOP/s); fast model, 4 runs × 50 steps: compile 41 s, 48 run-steps/s, 10.5 GFLOP/s = 41 %.

Example:
    >>> r = sweep_throughput(fast=True)              # doctest: +SKIP
    >>> sorted(r)[:3]                                 # doctest: +SKIP
    ['arch', 'batch_size', 'compile_s']
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import models
from toyllora.config import LoraConfig
from toyllora.data import sequences
from toyllora.models import transformer as tf
from toyllora.train import Trainer, grid

BATCH = 32
TARGETS = ("q", "v")


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def step_flops(model, base, X, Y) -> float:
    """XLA's FLOP count of one training step (loss, gradient, Adam update) of one run."""
    frozen, params = model.init(jax.random.key(0), base)
    opt = optax.adam(1e-3)

    def step(params, state):
        loss, g = jax.value_and_grad(lambda p: models.loss(model, frozen, p, X, Y))(params)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    return _flops(jax.jit(step).lower(params, opt.init(params)).compile())


def matmul_gflops(m: int, k: int, n: int, repeats: int = 20) -> float:
    """GFLOP/s of a jitted float32 ``(m, k) @ (k, n)`` (median of 3 rounds of ``repeats`` calls)."""
    a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            c = f(a, b)
        c.block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2.0 * m * k * n * repeats / float(np.median(times)) / 1e9


def sweep_throughput(fast: bool = False, base=None) -> dict:
    """The numbers of the module docstring for the transfer rung's model of record (4 blocks, width 64;
    ``fast``: the fast model, fewer runs)."""
    from toyllora.claims.transfer import _common as transfer

    arch = tf.FAST if fast else transfer.ARCH
    steps, lrs, seeds = (50, [1e-3, 3e-3], 2) if fast else (100, [1e-3, 3e-3], 4)
    if base is None:  # throughput does not depend on the weights' values
        base = tf.init_base(jax.random.key(0), arch)
    data = sequences.shifted_mixture(0, n_train=256, n_val=8, n_test=256).data
    model = tf.TransformerLoRA(LoraConfig(rank=8, alpha=16.0), arch, targets=TARGETS)
    tr = Trainer(model, optimizer="adam", steps=steps, stride=steps, batch_size=BATCH)
    hp = grid(lr=lrs)
    runs = len(lrs) * seeds

    t0 = time.perf_counter()
    tr.sweep(base, data, hp, seeds)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr.sweep(base, data, hp, seeds)
    run_s = time.perf_counter() - t0

    flops = step_flops(model, base, data.X[:BATCH], data.Y[:BATCH])
    gflops = flops * steps * runs / run_s / 1e9
    mm = matmul_gflops(runs * BATCH * sequences.SEQ_LEN, arch.width, arch.mlp)
    return {"arch": {"width": arch.width, "layers": arch.layers, "mlp": arch.mlp, "heads": arch.heads},
            "n_params": tf.n_params(base), "targets": list(TARGETS), "rank": 8, "batch_size": BATCH,
            "steps": steps, "runs": runs, "compile_s": first - run_s, "run_s": run_s,
            "run_steps_per_s": steps * runs / run_s, "flops_per_step": flops, "gflops": gflops,
            "matmul_gflops": mm, "share": gflops / mm, "devices": [str(d) for d in jax.devices()]}


def describe(r: dict) -> str:
    """One line of :func:`sweep_throughput`'s numbers."""
    return (f"transformer sweep ({r['n_params']} parameters, {r['runs']} runs × {r['steps']} steps, one vmapped "
            f"call): compile {r['compile_s']:.1f} s, {r['run_steps_per_s']:.0f} run-steps/s, {r['gflops']:.2f} "
            f"GFLOP/s = {100 * r['share']:.0f} % of a same-shape matmul ({r['matmul_gflops']:.1f} GFLOP/s)")


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    r = sweep_throughput(fast="--fast" in argv)
    print(describe(r))
    return r


if __name__ == "__main__":
    main()
