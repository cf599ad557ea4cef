"""A sweep over processes: the split covers every run once, in order; two local CPU processes started with
``jax.distributed`` each gather the single-process ``Trainer.sweep`` result; bad input names its field."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from toyllora import distributed
from toyllora.testing import tol

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120


def close(got, ref):
    """Equal up to float rounding (a different number of runs per compiled call may reorder sums)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, got.dtype, ref.shape, ref.dtype)
    if np.issubdtype(ref.dtype, np.floating):
        np.testing.assert_allclose(got, ref, rtol=50 * tol(f32=1e-6, f64=1e-13),
                                   atol=tol(f32=1e-6, f64=1e-12))
    else:
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("n_runs, num_processes", [(1, 1), (6, 2), (5, 2), (7, 3), (2, 4), (12, 5)])
def test_shares_cover_every_run_once_in_order(n_runs, num_processes):
    shares = [distributed.share(n_runs, num_processes, p) for p in range(num_processes)]
    k = distributed.share_size(n_runs, num_processes)
    assert all(s.shape == (k,) for s in shares)                      # one compiled shape for all
    assert all(np.all(np.diff(s[s >= s[0]]) == 1) for s in shares)   # contiguous (then the wrapped padding)
    assert sorted(set(np.concatenate(shares).tolist())) == list(range(n_runs))
    stacked = {"run": np.stack(shares), "pair": np.stack([np.stack([s, -s], axis=1) for s in shares])}
    flat = distributed.assemble(stacked, n_runs)
    assert flat["run"].tolist() == list(range(n_runs))
    assert flat["pair"].shape == (n_runs, 2) and flat["pair"][:, 1].tolist() == [-i for i in range(n_runs)]


def test_flatten_follows_the_sweep_order():
    hp, seeds, shape = distributed.flatten({"lr": [0.1, 0.2]}, [7, 8, 9])
    assert shape == (2, 3) and hp["lr"].tolist() == [0.1] * 3 + [0.2] * 3
    assert seeds.tolist() == [7, 8, 9] * 2


@pytest.fixture(scope="module")
def toy():
    return distributed.demo(grid_size=3, seeds=2, steps=20)


def test_split_runs_reassembled_equal_the_sweep(toy):
    """The whole path but the collective, in one process: three shares (padded) run and reassembled."""
    trainer, base, data, hp_grid, seeds = toy
    ref = trainer.sweep(base, data, hp_grid, seeds)
    hp_flat, seeds_flat, (G, S) = distributed.flatten(hp_grid, seeds)
    n, P = len(seeds_flat), 4                                      # 6 runs over 4 processes: shares of 2
    parts = [distributed.run_local(trainer, base, data, {k: v[idx] for k, v in hp_flat.items()}, seeds_flat[idx])
             for idx in (distributed.share(n, P, p) for p in range(P))]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *parts)
    got = jax.tree.map(lambda a: a.reshape((G, S) + a.shape[1:]), distributed.assemble(stacked, n))
    jax.tree.map(close, got, jax.tree.map(np.asarray, ref))
    loss = np.asarray(ref.metrics["train_loss"])[..., -1].ravel()
    assert len(np.unique(loss)) == n                              # every run differs: a misorder would show


def test_one_process_is_a_no_op_and_the_plain_sweep(toy):
    assert distributed.initialize(env={}) == distributed.Processes(0, 1)
    assert distributed.initialize(num_processes=1, process_id=0, env={}) == (0, 1)
    trainer, base, data, hp_grid, seeds = toy
    got, ref = distributed.sweep(trainer, base, data, hp_grid, seeds), trainer.sweep(base, data, hp_grid, seeds)
    jax.tree.map(np.testing.assert_array_equal, got, ref)


@pytest.mark.parametrize("kwargs, env, field", [
    (dict(num_processes=2, process_id=0), {}, "^coordinator_address: required"),
    (dict(coordinator_address="localhost:1234", num_processes=2), {}, "^process_id: required"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2), {}, r"^process_id: must be in 0\.\.1"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=-1), {}, "^process_id: must be an integer"),
    (dict(coordinator_address="localhost:1234"), {}, "^num_processes: required"),
    (dict(coordinator_address="localhost:1234", num_processes=0, process_id=0), {}, "^num_processes: must be"),
    (dict(coordinator_address="localhost:99999", num_processes=2, process_id=0), {}, "^coordinator_address: must"),
    (dict(coordinator_address="localhost", num_processes=2, process_id=0), {}, "^coordinator_address: must"),
    ({}, {"JAX_NUM_PROCESSES": "two"}, r"^num_processes: .*'two' \(from JAX_NUM_PROCESSES\)"),
    ({}, {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0", "JAX_COORDINATOR_ADDRESS": "h:0"},
     r"^coordinator_address: .*\(from JAX_COORDINATOR_ADDRESS\)"),
    (dict(num_processes=1, process_id=1), {}, r"^process_id: must be in 0\.\.0"),
])
def test_bad_processes_name_the_field(kwargs, env, field):
    with pytest.raises(ValueError, match=field):
        distributed.initialize(**kwargs, env=env)


def test_bad_split_and_launch_input_name_the_field(capsys):
    with pytest.raises(ValueError, match="^n_runs: must be an integer >= 1"):
        distributed.share(0, 2, 0)
    with pytest.raises(ValueError, match=r"^process_id: must be in 0\.\.1"):
        distributed.share(4, 2, 2)
    with pytest.raises(ValueError, match="^gathered: "):
        distributed.assemble({"x": np.zeros((2, 2))}, 5)
    with pytest.raises(ValueError, match="^hp_grid: needs entries of one length"):
        distributed.flatten({"lr": [0.1, 0.2], "b_ratio": [1.0]}, 2)
    with pytest.raises(ValueError, match="^timeout_s: must be an integer >= 1"):
        distributed.initialize(num_processes=1, env={}, timeout_s=0)
    assert distributed.main(["--num-processes", "2", "--process-id", "0"]) == 2
    assert "coordinator_address: required" in capsys.readouterr().err


# -- two real processes -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV.values() and k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def launch(argv_for, timeout_s):
    """Start one process per argv (process ids 0, 1), wait; ``(returncodes, outputs)`` (None on timeout)."""
    procs = [subprocess.Popen(argv_for(pid), env=child_env(), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for pid in (0, 1)]
    codes, outs = [], []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout_s)
            codes.append(p.returncode)
            outs.append(out)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        return None, [f"timed out after {timeout_s} s"]
    return codes, outs


PROBE = textwrap.dedent("""
    import sys, jax, numpy as np
    from jax.experimental import multihost_utils
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]), initialization_timeout=30)
    assert multihost_utils.process_allgather(np.int32(jax.process_index())).tolist() == [0, 1]
""")


def skip_unless_platform_runs_distributed(detail):
    """The sweep's processes failed: skip if bare ``jax.distributed`` (start + one all-gather) fails too."""
    port = free_port()
    codes, outs = launch(lambda pid: [sys.executable, "-c", PROBE, f"localhost:{port}", str(pid)], 60)
    if codes != [0, 0]:
        last = (outs[-1].strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"jax.distributed cannot start two CPU processes here: {last}")
    pytest.fail(f"jax.distributed works here but the distributed sweep failed:\n{detail}")


def test_two_cpu_processes_gather_the_single_process_sweep(tmp_path):
    port, out = free_port(), tmp_path / "history_{process_id}.npz"
    size = ["--grid-size", "3", "--seeds", "1", "--steps", "20"]   # 3 runs: shares [0, 1] and [2, 0 (padding)]
    codes, outs = launch(lambda pid: [sys.executable, "-m", "toyllora.distributed", "--coordinator",
                                      f"localhost:{port}", "--num-processes", "2", "--process-id", str(pid),
                                      "--timeout", "60", "--out", str(out), *size], TIMEOUT_S)
    if codes != [0, 0]:
        skip_unless_platform_runs_distributed("\n".join(outs))
    assert "process 0/2: ran flat runs [0, 1] of 3" in outs[0] and "process 1/2: ran flat runs [2, 0] of 3" in outs[1]
    trainer, base, data, hp_grid, seeds = distributed.demo(grid_size=3, seeds=1, steps=20)
    ref = distributed.flat_arrays(jax.tree.map(np.asarray, trainer.sweep(base, data, hp_grid, seeds)))
    got = [dict(np.load(str(out).replace("{process_id}", str(pid)))) for pid in (0, 1)]
    assert set(got[0]) == set(got[1]) == set(ref)
    for name in ref:
        np.testing.assert_array_equal(got[1][name], got[0][name])  # every process holds the same result
        close(got[0][name], ref[name])
    assert len(np.unique(ref[".metrics['train_loss']"][..., -1])) == 3  # runs differ: a misorder would show
