"""``toyllora bench``: measure the training engine (and ALLoRA's step cost); print a table, write JSON.

Engine benchmark, on the multilinear LoRA toy (L = 4 layers, Adam, f32):

* ms per step for one seed as one compiled ``lax.scan``;
* ms per seed-step inside a 64-seed vmapped sweep;
* the same toy driven by a Python loop that calls a jitted step (the usual hand-written pattern);
* first-call compile time;
* achieved GFLOP/s at the medium size next to a plain f32 matmul of the same shapes.

Example::

    toyllora bench --fast --out results/bench.json
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import models
from toyllora.harness import io
from toyllora.config import LoraConfig
from toyllora.data import Data
from toyllora.train import Trainer

SIZES = {"small": dict(d=32, n=64, r=4), "medium": dict(d=256, n=512, r=8)}
LAYERS = 4


def _toy(d, n, r, seed=0):
    rng = np.random.default_rng(seed)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    base = tuple(f32(rng.standard_normal((d, d)) / np.sqrt(d)) for _ in range(LAYERS))
    X = f32(rng.standard_normal((n, d)))
    Y = f32(rng.standard_normal((n, d)))
    model = models.MultilinearLoRA(LoraConfig(rank=r, alpha=float(r)))
    return model, base, Data(X, Y, X[:8], Y[:8])


def _flops_per_step(d, n, r, L=LAYERS):
    """Forward 2nd² + 4ndr per layer; backward (input grad through W and the branch, A and B grads)
    2nd² + 8ndr per layer (W is frozen, so no weight gradient for it)."""
    return L * (4 * n * d * d + 12 * n * d * r)


def _time(fn, repeats):
    fn()  # warm
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _block(tree):
    jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, tree)
    return tree


def engine_bench(fast: bool = False) -> dict:
    """Engine numbers for the small and medium multilinear toys (see the module docstring)."""
    out = {}
    repeats = 2 if fast else 5
    for name, sz in SIZES.items():
        d, n, r = sz["d"], sz["n"], sz["r"]
        if fast and name == "medium":
            steps, seeds = 20, 8
        else:
            steps, seeds = (50, 16) if fast else (200, 64)
        model, base, data = _toy(d, n, r)
        tr = Trainer(model, optimizer="adam", steps=steps, stride=steps)
        hp = {"lr": jnp.asarray(1e-3, jnp.float32)}

        t0 = time.perf_counter()
        _block(tr.run(base, data, hp, seed=0))
        compile_s = time.perf_counter() - t0
        scan_s = _time(lambda: _block(tr.run(base, data, hp, seed=1)), repeats)

        grid = {"lr": np.full(1, 1e-3)}
        _block(tr.sweep(base, data, grid, seeds))  # compile the vmapped program
        sweep_s = _time(lambda: tr.sweep(base, data, grid, seeds), repeats)

        # The usual hand-written pattern: a Python loop around a jitted step.
        frozen, params = model.init(jax.random.key(0), base)
        opt = optax.adam(1e-3)
        state = opt.init(params)

        @jax.jit
        def step(params, state, key):
            loss, g = jax.value_and_grad(
                lambda p: models.loss(model, frozen, p, data.X, data.Y, train=True, key=key))(params)
            upd, state = opt.update(g, state, params)
            return optax.apply_updates(params, upd), state, loss

        key = jax.random.key(0)
        _block(step(params, state, key))

        def loop():
            p, s = params, state
            for t in range(steps):
                p, s, _ = step(p, s, jax.random.fold_in(key, t))
            _block(p)

        loop_s = _time(loop, max(1, repeats // 2))
        flops = _flops_per_step(d, n, r)
        out[name] = {
            **sz, "layers": LAYERS, "steps": steps, "seeds": seeds,
            "compile_s": compile_s,
            "ms_per_step_scan": 1e3 * scan_s / steps,
            "ms_per_seed_step_vmapped": 1e3 * sweep_s / (steps * seeds),
            "ms_per_step_python_loop": 1e3 * loop_s / steps,
            "gflops_scan": flops * steps / scan_s / 1e9,
            "gflops_vmapped": flops * steps * seeds / sweep_s / 1e9,
        }
    out["matmul"] = matmul_bench(SIZES["medium"]["n"], SIZES["medium"]["d"], repeats=repeats)
    return out


def matmul_bench(n, d, repeats=5) -> dict:
    """GFLOP/s of a plain jitted f32 matmul ``(n, d) @ (d, d)`` and of a 1024³ one."""
    res = {}
    for label, (m, k) in {"same_shape": (n, d), "square_1024": (1024, 1024)}.items():
        a = jnp.ones((m, k), jnp.float32)
        b = jnp.ones((k, k), jnp.float32)
        f = jax.jit(lambda a, b: a @ b)
        reps = 50 if label == "same_shape" else 5

        def many():
            for _ in range(reps):
                c = f(a, b)
            c.block_until_ready()

        s = _time(many, repeats)
        res[label] = {"shape": [m, k, k], "gflops": 2 * m * k * k * reps / s / 1e9}
    return res


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)


def main(out="results/bench.json", fast: bool = False) -> dict:
    """Run every benchmark, print a table and write JSON atomically to ``out``."""
    result = {"engine": engine_bench(fast), "fast": fast, "versions": io.versions(),
              "machine": {"platform": platform.platform(), "devices": [str(d) for d in jax.devices()]}}
    try:
        from toyllora.harness import bench_allora
    except ImportError:
        bench_allora = None
    if bench_allora is not None:
        result["allora"] = bench_allora.allora_step_ratios(fast=fast)
    reproduce_time = Path(out).parent / "reproduce_time.json"
    if reproduce_time.exists():
        result["reproduce"] = json.loads(reproduce_time.read_text())
    e = result["engine"]
    rows = [("toy (L=4, Adam, f32)", "compile s", "ms/step scan", "ms/seed-step vmapped", "ms/step py-loop",
             "GFLOP/s scan", "GFLOP/s vmapped")]
    for name in SIZES:
        v = e[name]
        rows.append((f"{name} d={v['d']} n={v['n']} r={v['r']}", f"{v['compile_s']:.2f}",
                     f"{v['ms_per_step_scan']:.4f}", f"{v['ms_per_seed_step_vmapped']:.4f}",
                     f"{v['ms_per_step_python_loop']:.4f}", f"{v['gflops_scan']:.1f}", f"{v['gflops_vmapped']:.1f}"))
    print(_table(rows))
    mm = e["matmul"]
    print(f"plain f32 matmul: same shape {mm['same_shape']['gflops']:.1f} GFLOP/s, "
          f"1024³ {mm['square_1024']['gflops']:.1f} GFLOP/s")
    if "allora" in result:
        print("ALLoRA / DoRA step-time ratios to LoRA:")
        print(json.dumps(io.to_jsonable(result["allora"]), indent=1))
    io.write_json(Path(out), result)
    return result
