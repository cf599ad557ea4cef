"""How the engine's time grows: with seeds in a vmapped sweep, with width, with depth, and across devices.

Each series is timed in interleaved rounds (:mod:`toyllora.harness.bench_timing`) and set against its
*ideal* line: time proportional to the work (seed-steps × FLOPs per step), drawn through the largest point,
where fixed costs (dispatch, the scan's bookkeeping, metrics) weigh least. A point above the line pays a
fixed cost; below it (at few seeds) means the hardware is not yet full.

* ``seeds``: the small toy (d = 32, n = 64, r = 4, L = 4), one ``Trainer.sweep`` of S seeds, S = 1 … 256;
* ``width``: one seed's scan, d = 32 … 1024 (n = 256, r = 8, L = 4);
* ``depth``: one seed's scan, L = 2 … 16 (d = 128, n = 256, r = 8);
* ``devices``: a 64-seed sweep sharded over N = 1, 2, 4 devices, each N in a fresh process with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (fake CPU devices share the same cores, so on a
  CPU this measures the sharding's overhead, not a speed-up).

Example:
    >>> r = series("depth", fast=True, repeats=1)            # doctest: +SKIP
    >>> [row["x"] for row in r["rows"]]                       # doctest: +SKIP
    [2, 4]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from toyllora.harness import bench_engine, bench_timing
from toyllora.train import Trainer

LR = bench_engine.LR
SERIES = {
    # name: (x label, full values, fast values)
    "seeds": ("seeds S", (1, 2, 4, 8, 16, 32, 64, 128, 256), (1, 64)),   # fast: seeds only
    "width": ("width d", (32, 64, 128, 256, 512, 1024), ()),
    "depth": ("depth L", (2, 4, 8, 16), ()),
}
DEVICES = (1, 2, 4)
SHARD_SEEDS, SHARD_STEPS = 64, 50


def _case(name: str, x: int, fast: bool):
    """(d, n, r, layers, steps, seeds) of one point of a series."""
    if name == "seeds":
        return 32, 64, 4, 4, (20 if fast else 50), x
    if name == "width":
        steps = 10 if fast else int(np.clip(2 ** 20 // (x * x) * 10, 5, 200))
        return x, 256, 8, 4, steps, 1
    return 128, 256, 8, x, (10 if fast else 50), 1


def _callable(d, n, r, layers, steps, seeds):
    arrays = bench_engine.toy_arrays(d, n, layers=layers)
    base, data = bench_engine._data(arrays)
    tr = Trainer(bench_engine.toy_model(r), optimizer="adam", steps=steps, stride=steps)
    grid = {"lr": np.full(1, LR)}
    if seeds == 1:
        fn = lambda: jax.block_until_ready(tr.run(base, data, {"lr": LR}, seed=1))
    else:
        fn = lambda: tr.sweep(base, data, grid, seeds)
    fn()   # compile
    return fn


def series(name: str, fast: bool = False, repeats: int | None = None) -> dict:
    """One scaling series (see the module docstring): a row per point with its median time per call,
    interval, ms per seed-step, GFLOP/s, the ideal time and measured/ideal."""
    label, full, quick = SERIES[name]
    xs = quick if fast else full
    repeats = repeats or (3 if fast else 7)
    cases = {x: _case(name, x, fast) for x in xs}
    fns = {str(x): _callable(*c) for x, c in cases.items()}
    timed = bench_timing.interleaved(fns, repeats, warm=0)
    rows = []
    for x, (d, n, r, layers, steps, seeds) in cases.items():
        m = timed["median_s"][str(x)]
        work = steps * seeds * bench_engine.flops_per_step(d, n, r, layers)
        rows.append({"x": x, "d": d, "n": n, "r": r, "layers": layers, "steps": steps, "seeds": seeds,
                     "s_per_call": m, "work_flops": work,
                     "ms_per_seed_step": 1e3 * m["median"] / (steps * seeds),
                     "gflops": work / m["median"] / 1e9})
    top = max(rows, key=lambda row: row["work_flops"])
    rate = top["s_per_call"]["median"] / top["work_flops"]
    for row in rows:
        row["ideal_s"] = rate * row["work_flops"]
        row["over_ideal"] = row["s_per_call"]["median"] / row["ideal_s"]
    return {"name": name, "x_label": label, "repeats": repeats, "rows": rows}


# -- the sharded path, one fresh process per device count -------------------------------------------------


def _worker(n_dev: int, seeds: int, steps: int, repeats: int) -> dict:
    """Runs inside the subprocess: a ``seeds``-seed sweep of the small toy over ``n_dev`` devices."""
    if jax.device_count() != n_dev:
        raise RuntimeError(f"expected {n_dev} devices, got {jax.device_count()} ({jax.devices()})")
    fn = _callable(32, 64, 4, 4, steps, seeds)
    timed = bench_timing.interleaved({"sweep": fn}, repeats, warm=1)
    m = timed["median_s"]["sweep"]
    return {"devices": n_dev, "seeds": seeds, "steps": steps, "s_per_call": m,
            "ms_per_seed_step": 1e3 * m["median"] / (seeds * steps)}


def _child_env(n_dev: int) -> dict:
    from toyllora import compile_cache

    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_dev}",
               JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                    if p]))
    if compile_cache.folder() is not None:
        env["TOYLLORA_COMPILE_CACHE"] = compile_cache.folder()
    return env


def sharding(fast: bool = False, devices=DEVICES, timeout: float = 300) -> dict:
    """The sharded sweep on 1, 2 and 4 fake CPU devices (fresh process each); overhead = time(N) / time(1).

    The child processes run on the CPU platform whatever this process uses (fake devices are a CPU
    feature); on a machine with several GPUs the same sweep shards over them with no flag at all.
    """
    seeds, steps, repeats = (16, 10, 3) if fast else (SHARD_SEEDS, SHARD_STEPS, 7)
    rows = []
    for n in devices:
        code = ("import json, sys; from toyllora.harness import bench_scale as b; "
                f"print('RESULT', json.dumps(b._worker({n}, {seeds}, {steps}, {repeats})))")
        proc = subprocess.run([sys.executable, "-c", code], env=_child_env(n), capture_output=True, text=True,
                              timeout=timeout)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"sharded bench on {n} devices failed: {tail[0]}")
        rows.append(json.loads(line[0][len("RESULT "):]))
    one = rows[0]["s_per_call"]["median"]
    for row in rows:
        row["overhead"] = row["s_per_call"]["median"] / one
    return {"rows": rows, "cores": os.cpu_count(), "platform": "cpu (fake devices)"}


# -- table and plot ----------------------------------------------------------------------------------------


def table(result: dict) -> list[tuple]:
    """Rows (header first) of one series for :func:`toyllora.harness.bench.format_table`."""
    rows = [(result["x_label"], "steps×seeds", "ms/call [95% CI]", "ms/seed-step", "GFLOP/s", "ideal ms",
             "measured/ideal")]
    for r in result["rows"]:
        m = r["s_per_call"]
        rows.append((r["x"], f"{r['steps']}×{r['seeds']}",
                     f"{1e3 * m['median']:.2f} [{1e3 * m['lo']:.2f}, {1e3 * m['hi']:.2f}]",
                     f"{r['ms_per_seed_step']:.4f}", f"{r['gflops']:.2f}", f"{1e3 * r['ideal_s']:.2f}",
                     f"{r['over_ideal']:.2f}"))
    return rows


def plot(results: dict, path: Path) -> Path:
    """A log–log panel per series (time per call vs the series' x) with its ideal line; PNG at ``path``."""
    from toyllora.harness import io
    from toyllora.plotting import figure, legend

    names = [n for n in SERIES if n in results]
    fig, axes = figure(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        res = results[name]
        x = np.array([r["x"] for r in res["rows"]], dtype=float)
        t = np.array([r["s_per_call"]["median"] for r in res["rows"]]) * 1e3
        lo = t - np.array([r["s_per_call"]["lo"] for r in res["rows"]]) * 1e3
        hi = np.array([r["s_per_call"]["hi"] for r in res["rows"]]) * 1e3 - t
        ideal = np.array([r["ideal_s"] for r in res["rows"]]) * 1e3
        ax.errorbar(x, t, yerr=[lo, hi], fmt="o-", ms=4, capsize=2, label="measured (median, 95% CI)")
        ax.plot(x, ideal, "k:", lw=1, label="ideal: ∝ work, through the largest")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(res["x_label"])
        ax.set_ylabel("ms per call")
        ax.set_title(name)
    legend(axes[0][-1])
    path = Path(path)
    io.atomic_write_bytes(path, _png(fig))
    return path


def _png(fig) -> bytes:
    import io as _io

    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
