"""How far ``reproduce --jobs N`` can go on this machine: the same job alone and in N concurrent processes.

``reproduce`` measures the claims in one worker process per core. That halves the wall time only if two
processes on two cores each run as fast as one alone. This module times three jobs, each in a fresh process
with one XLA thread, first alone and then as ``N`` copies started together (after every copy has compiled;
they wait at a barrier and then time the same work):

* ``matmul``: a jitted float32 ``1024 × 1024`` matmul, repeated (floating-point bound);
* ``transformer``: a LoRA fine-tuning sweep of the transfer rung's transformer of record (6 runs, the rung's
  batch and LoRA placement, random base weights): the work of a full ``reproduce`` (floating-point bound,
  small matrices);
* ``python``: a pure-Python integer loop, a stand-in for JAX's tracing and lowering (what a warm fast run
  spends its time on).

``scaling = N · t(alone) / t(N together)`` (median over the copies) is the throughput of N processes over
one's: ``N`` when the cores are independent, 1 when they share one floating-point unit (two hyper-threads
of one physical core shown to the machine as two cores).

Run: ``python -m toyllora.harness.bench_workers [--fast] [--jobs N]`` (about a minute; ``toyllora bench``
includes it in full mode).

Measured on this project's 2-core CPU machine (2026-12-07, idle, ``python -m toyllora.harness.bench_workers``):
throughput of 2 processes over 1: ``matmul`` 0.95, ``transformer`` 1.27, ``python`` 1.91. The two cores behave as one
floating-point unit (likely two hyper-threads of one physical core): a second worker nearly doubles tracing
and compiling, not execution. A 1-seed full
``reproduce`` (warm compile cache) took 772 s with ``--jobs 1`` and 557 s with ``--jobs 2`` (1.39×).

Example:
    >>> jobs_default() >= 1
    True
    >>> sorted(JOBS)
    ['matmul', 'python', 'transformer']
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

JOBS = ("matmul", "transformer", "python")
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
# repeats of each job's unit of work (full, fast): about 2 s (full) or 0.5 s (fast) alone on one core
REPEATS = {"matmul": (200, 50), "transformer": (4, 1), "python": (6, 2)}


def jobs_default() -> int:
    """The number of copies run together when none is given: one per core, as ``reproduce --jobs auto``."""
    return max(1, os.cpu_count() or 1)


def _work(job: str):
    """A callable doing one unit of ``job`` (blocking until done), compiled and warmed up."""
    if job == "python":
        def python_loop():
            s = 0
            for i in range(2_000_000):
                s += i * i % 7
            return s
        return python_loop
    import jax
    import jax.numpy as jnp

    if job == "matmul":
        a = jnp.ones((1024, 1024), jnp.float32)
        f = jax.jit(lambda a: a @ a)
        f(a).block_until_ready()
        return lambda: f(a).block_until_ready()
    if job == "transformer":
        from toyllora.claims.transfer import _common as transfer
        from toyllora.config import LoraConfig
        from toyllora.data import sequences
        from toyllora.models import transformer as tf
        from toyllora.train import Trainer, grid

        arch = transfer.ARCH
        base = tf.init_base(jax.random.key(0), arch)
        data = sequences.shifted_mixture(0, n_train=256, n_val=8, n_test=128).data
        model = tf.TransformerLoRA(LoraConfig(rank=8, alpha=16.0), arch, targets=("q", "v"))
        tr = Trainer(model, optimizer="adam", steps=25, stride=25, batch_size=16)
        hp = grid(lr=[1e-3, 2e-3, 4e-3])
        tr.sweep(base, data, hp, 2)
        return lambda: jax.block_until_ready(tr.sweep(base, data, hp, 2).metrics)
    raise ValueError(f"job: unknown value {job!r}; allowed: {JOBS}")


def _child(job: str, repeats: int) -> None:
    """In a worker process: warm up, say ``ready``, wait for ``go`` on stdin, time ``repeats`` units."""
    fn = _work(job)
    fn()
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)


def _together(job: str, copies: int, repeats: int) -> list[float]:
    """Seconds of each of ``copies`` processes timing ``job`` at the same moment."""
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + ONE_THREAD).strip())
    cmd = [sys.executable, "-m", "toyllora.harness.bench_workers", "--child", job, str(repeats)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(copies)]

    def last_error(p) -> str:
        p.kill()
        lines = [x for x in p.stderr.read().splitlines() if x.strip()]
        return lines[-1] if lines else f"exit status {p.wait()}"

    try:
        for p in procs:                     # the barrier: every copy has compiled and warmed up
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"bench_workers: a {job} worker failed before timing: {last_error(p)}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        out = []
        for p in procs:
            line = p.stdout.readline()
            if p.wait() != 0 or not line:
                raise RuntimeError(f"bench_workers: a {job} worker failed while timing: {last_error(p)}")
            out.append(float(json.loads(line)["seconds"]))
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def scaling(fast: bool = False, jobs: int | None = None, which=JOBS) -> dict:
    """Per job: seconds alone, seconds of each of ``jobs`` copies together, and the throughput scaling
    ``jobs · t(alone) / median t(together)`` (see the module docstring)."""
    jobs = jobs_default() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: must be an integer >= 1, got {jobs!r}")
    rows = {}
    for job in which:
        if job not in JOBS:
            raise ValueError(f"job: unknown value {job!r}; allowed: {JOBS}")
        repeats = REPEATS[job][1 if fast else 0]
        alone = _together(job, 1, repeats)[0]
        together = _together(job, jobs, repeats)
        rows[job] = {"repeats": repeats, "alone_s": alone, "together_s": together,
                     "scaling": jobs * alone / float(np.median(together))}
    return {"jobs": jobs, "cores": os.cpu_count(), "rows": rows}


def table(r: dict) -> list[tuple]:
    """Rows (header first) of :func:`scaling`'s result."""
    n = r["jobs"]
    rows = [("job", "alone s", f"{n} together s (median)", f"throughput of {n} / of 1", "ideal")]
    for job, v in r["rows"].items():
        rows.append((job, f"{v['alone_s']:.2f}", f"{float(np.median(v['together_s'])):.2f}",
                     f"{v['scaling']:.2f}", f"{n}"))
    return rows


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]))
        return {}
    jobs = int(argv[argv.index("--jobs") + 1]) if "--jobs" in argv else None
    r = scaling(fast="--fast" in argv, jobs=jobs)
    for row in table(r):
        print(" | ".join(str(c) for c in row))
    return r


if __name__ == "__main__":
    main()
