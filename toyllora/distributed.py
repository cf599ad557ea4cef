"""A sweep past one machine: the runs axis of :meth:`Trainer.sweep` split over processes (``jax.distributed``).

Every process holds the same trainer, data, grid and seeds. The flattened ``grid × seeds`` runs are cut into
``num_processes`` contiguous shares of one size (the last padded by wrapping around, so every process
compiles the same shape); each process runs its share as the same vmapped compiled call as a one-process
sweep, sharded over its own devices; then every process gathers all shares
(``jax.experimental.multihost_utils.process_allgather``, a collective over the global mesh of all
processes' devices) and drops the padding. The result is the ``(G, S, ...)`` History of
``Trainer.sweep``, on every process.

Launch one process per host (or several on one host), all with the same command but their own process id;
process 0's address is the coordinator. Two local CPU processes, the built-in demo sweep (``--help``)::

    JAX_PLATFORMS=cpu python -m toyllora.distributed --coordinator localhost:12355 --num-processes 2 --process-id 0 &
    JAX_PLATFORMS=cpu python -m toyllora.distributed --coordinator localhost:12355 --num-processes 2 --process-id 1

A script of your own calls :func:`initialize` before any other JAX call, then :func:`sweep`; without
arguments, ``initialize`` reads ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``,
and with none of them set it is a no-op (one process, :func:`sweep` is then ``Trainer.sweep``).

Example (one process):
    >>> from toyllora import distributed
    >>> distributed.initialize(num_processes=1)
    Processes(process_id=0, num_processes=1)
    >>> trainer, base, data, hp_grid, seeds = distributed.demo(grid_size=3, seeds=2, steps=20)
    >>> distributed.sweep(trainer, base, data, hp_grid, seeds).metrics["train_loss"].shape   # (G, S, records)
    (3, 2, 3)
    >>> [distributed.share(n_runs=5, num_processes=2, process_id=p).tolist() for p in (0, 1)]
    [[0, 1, 2], [3, 4, 0]]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import train
from toyllora.train import History, Trainer

ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class Processes(NamedTuple):
    """This process's place among all of them."""

    process_id: int
    num_processes: int


# -- starting -----------------------------------------------------------------------------------------
def _integer(field, value, env_name, minimum):
    source = f" (from {env_name})" if env_name else ""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {value!r}{source}")
    return int(value)


def resolve(coordinator_address=None, num_processes=None, process_id=None, env=None) -> tuple:
    """``(coordinator_address, num_processes, process_id)`` from the arguments, else the environment
    (:data:`ENV`), validated; ``num_processes`` 1 (or unset everywhere) means one process.

    >>> resolve("localhost:1234", 2, 1, env={})
    ('localhost:1234', 2, 1)
    >>> resolve(env={"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0", "JAX_COORDINATOR_ADDRESS": "h:9"})
    ('h:9', 2, 0)
    >>> resolve(env={})
    (None, 1, 0)
    """
    env = os.environ if env is None else env
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    values, sources = {}, {}
    for field, value in given.items():
        if value is None and env.get(ENV[field], "").strip():
            value, sources[field] = env[ENV[field]].strip(), ENV[field]
        values[field] = value
    n = values["num_processes"]
    if n is None:
        if values["coordinator_address"] is not None:
            raise ValueError("num_processes: required with a coordinator_address (argument or "
                             f"{ENV['num_processes']}), got none")
        n = 1
    n = _integer("num_processes", n, sources.get("num_processes"), 1)
    pid = values["process_id"]
    if pid is None and n > 1:
        raise ValueError(f"process_id: required with num_processes = {n} (argument or {ENV['process_id']}): "
                         f"an integer in 0..{n - 1}")
    pid = _integer("process_id", 0 if pid is None else pid, sources.get("process_id"), 0)
    if pid >= n:
        raise ValueError(f"process_id: must be in 0..{n - 1} (num_processes = {n}), got {pid}")
    address = values["coordinator_address"]
    if n > 1 and address is None:
        raise ValueError(f"coordinator_address: required with num_processes = {n} (argument or "
                         f"{ENV['coordinator_address']}), as 'host:port', e.g. 'localhost:12355'")
    if address is not None:
        m = _ADDRESS.match(str(address).strip())
        if not m or not 1 <= int(m.group(2)) <= 65535:
            source = f" (from {sources['coordinator_address']})" if "coordinator_address" in sources else ""
            raise ValueError(f"coordinator_address: must be 'host:port' with a port in 1..65535, e.g. "
                             f"'localhost:12355', got {address!r}{source}")
        address = str(address).strip()
    return address, n, pid


def initialize(coordinator_address=None, num_processes=None, process_id=None, *, timeout_s: int = 120,
               env=None) -> Processes:
    """Start ``jax.distributed`` (call before any other JAX computation); a no-op for one process.

    Args:
      coordinator_address: ``host:port`` of process 0 (default ``$JAX_COORDINATOR_ADDRESS``).
      num_processes: how many processes take part (default ``$JAX_NUM_PROCESSES``, else 1).
      process_id: this one's index in ``0..num_processes-1`` (default ``$JAX_PROCESS_ID``).
      timeout_s: how long to wait for every process to connect.

    Returns:
      :class:`Processes`. Calling it again with the same values returns the same answer.
    """
    address, n, pid = resolve(coordinator_address, num_processes, process_id, env)
    timeout_s = _integer("timeout_s", timeout_s, None, 1)
    if jax.distributed.is_initialized():
        current = Processes(jax.process_index(), jax.process_count())
        if current != Processes(pid, n):
            raise ValueError(f"num_processes, process_id: jax.distributed is already running as {current}, "
                             f"asked for {Processes(pid, n)}")
        return current
    if n == 1:
        return Processes(0, 1)
    jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid,
                               initialization_timeout=timeout_s)
    return Processes(jax.process_index(), jax.process_count())


# -- splitting and reassembling -----------------------------------------------------------------------
def share_size(n_runs: int, num_processes: int) -> int:
    """Runs per process: ``ceil(n_runs / num_processes)`` (the same for all, so one compiled shape)."""
    n_runs = _integer("n_runs", n_runs, None, 1)
    num_processes = _integer("num_processes", num_processes, None, 1)
    return math.ceil(n_runs / num_processes)


def share(n_runs: int, num_processes: int, process_id: int) -> np.ndarray:
    """The flat run indices that ``process_id`` runs: a contiguous block, padded by wrapping (mod ``n_runs``)."""
    k = share_size(n_runs, num_processes)
    pid = _integer("process_id", process_id, None, 0)
    if pid >= num_processes:
        raise ValueError(f"process_id: must be in 0..{num_processes - 1}, got {pid}")
    return np.arange(pid * k, (pid + 1) * k) % n_runs


def assemble(gathered, n_runs: int):
    """Shares stacked as ``(num_processes, share, ...)`` (every leaf) → the ``n_runs`` runs in flat order.

    >>> assemble({"x": np.array([[0, 1, 2], [3, 4, 0]])}, 5)["x"].tolist()
    [0, 1, 2, 3, 4]
    """
    def one(a):
        a = np.asarray(a)
        if a.ndim < 2 or a.shape[0] * a.shape[1] < n_runs:
            raise ValueError(f"gathered: every leaf needs leading axes (num_processes, share) holding at least "
                             f"n_runs = {n_runs} runs, got shape {a.shape}")
        return a.reshape((-1,) + a.shape[2:])[:n_runs]
    return jax.tree.map(one, gathered)


def flatten(hp_grid: dict, seeds) -> tuple:
    """``(hp_flat, seeds_flat, (G, S))`` in ``Trainer.sweep``'s order: run ``g·S + s`` is setting g, seed s."""
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    lengths = {len(np.atleast_1d(v)) for v in hp_grid.values()}
    if len(lengths) != 1:
        raise ValueError(f"hp_grid: needs entries of one length, got lengths {sorted(lengths)}")
    G, S = lengths.pop(), len(seeds)
    if S < 1:
        raise ValueError("seeds: need at least one seed")
    hp_flat = {k: np.repeat(np.asarray(v, dtype=np.float64), S) for k, v in hp_grid.items()}
    return hp_flat, np.tile(np.asarray(seeds, dtype=np.uint32), G), (G, S)


# -- running ------------------------------------------------------------------------------------------
def run_local(trainer: Trainer, base, data, hp_flat: dict, seeds_flat, *, chunk_size=None) -> History:
    """``train.run_many`` on this process's devices only (the same compiled call); numpy leaves."""
    devices = jax.local_devices()
    N = len(seeds_flat)
    chunk = N if chunk_size is None else _integer("chunk_size", chunk_size, None, 1)
    chunk = math.ceil(chunk / len(devices)) * len(devices)
    fn = train._compiled_many(trainer)
    sharding = None
    if len(devices) > 1:
        mesh = jax.sharding.Mesh(np.asarray(devices), ("runs",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    outs = []
    for start in range(0, N, chunk):
        idx = np.arange(start, start + chunk) % N  # pad by wrapping; dropped below
        hp = train._hp_arrays({k: np.asarray(v)[idx] for k, v in hp_flat.items()})
        keys = jax.vmap(jax.random.key)(jnp.asarray(np.asarray(seeds_flat)[idx], dtype=jnp.uint32))
        if sharding is not None:
            hp, keys = jax.device_put((hp, keys), sharding)
        out = fn(base, data, hp, keys)
        outs.append(jax.tree.map(lambda a: np.asarray(a)[:min(chunk, N - start)], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *outs)


def _fingerprint(*trees) -> np.uint32:
    crc = 0
    for leaf in jax.tree.leaves(trees):
        a = np.ascontiguousarray(np.asarray(leaf))
        crc = zlib.crc32(f"{a.dtype}{a.shape}".encode() + a.tobytes(), crc)
    return np.uint32(crc)


def allgather(tree):
    """Every process's pytree (leaves of equal shapes across processes), stacked on a new leading axis.

    The leaves are packed into one buffer per dtype, so a History costs one or two collectives
    (``multihost_utils.process_allgather`` compiles one program per distinct leaf shape).
    """
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(tree)
    leaves = [np.asarray(a) for a in leaves]
    by_dtype = {}
    for i, a in enumerate(leaves):
        by_dtype.setdefault(a.dtype.str, []).append(i)
    out = [None] * len(leaves)
    for members in by_dtype.values():
        packed = np.concatenate([leaves[i].ravel() for i in members])
        gathered = np.asarray(multihost_utils.process_allgather(packed))  # (P, total)
        offset = 0
        for i in members:
            size = leaves[i].size
            out[i] = gathered[:, offset:offset + size].reshape((-1,) + leaves[i].shape)
            offset += size
    return jax.tree.unflatten(treedef, out)


def sweep(trainer: Trainer, base, data, hp_grid: dict, seeds, *, chunk_size=None) -> History:
    """``Trainer.sweep`` with its runs split over the processes of ``jax.distributed`` (see the module).

    Every process must pass the same arguments (checked by a fingerprint of the grid, seeds, base and
    data); each gets the full ``(G, S, ...)`` History (numpy leaves). With one process it is
    ``trainer.sweep``. ``chunk_size`` bounds the runs per compiled call within a process.
    """
    from jax.experimental import multihost_utils

    train.validate_data(data)
    hp_flat, seeds_flat, (G, S) = flatten(hp_grid, seeds)
    P = jax.process_count()
    if P == 1:
        return trainer.sweep(base, data, hp_grid, [int(s) for s in seeds_flat[:S]], chunk_size=chunk_size)
    try:
        multihost_utils.assert_equal(_fingerprint(hp_flat, seeds_flat, base, data))
    except AssertionError as e:
        raise ValueError("hp_grid, seeds, base, data: differ between processes; every process must pass the "
                         "same sweep") from e
    N = len(seeds_flat)
    idx = share(N, P, jax.process_index())
    mine = run_local(trainer, base, data, {k: v[idx] for k, v in hp_flat.items()}, seeds_flat[idx],
                     chunk_size=chunk_size)
    gathered = allgather(mine)  # every leaf (P, share, ...)
    return jax.tree.map(lambda a: a.reshape((G, S) + a.shape[1:]), assemble(gathered, N))


# -- the demo launcher --------------------------------------------------------------------------------
def demo(grid_size: int = 3, seeds: int = 2, steps: int = 20) -> tuple:
    """A tiny sweep to try a launch with: the OLS LoRA toy, Adam, ``grid_size`` learning rates × ``seeds``.

    Returns ``(trainer, base, data, hp_grid, seeds)``, the arguments of :func:`sweep`.
    """
    from toyllora.config import LoraConfig
    from toyllora.data import teacher_student
    from toyllora.models import LinearLoRA

    grid_size = _integer("grid_size", grid_size, None, 1)
    seeds = _integer("seeds", seeds, None, 1)
    steps = _integer("steps", steps, None, 1)
    task = teacher_student(seed=0, d_in=8, d_out=4, n_train=32, n_test=32, shift_rank=1)
    trainer = Trainer(LinearLoRA(LoraConfig(rank=1, alpha=1.0, keep=0.9)), optimizer="adam", steps=steps,
                      stride=math.gcd(steps, 10))
    return trainer, task.W0, task.data, train.grid(lr=np.geomspace(0.01, 0.1, grid_size)), list(range(seeds))


def flat_arrays(tree) -> dict:
    """A pytree's leaves by their ``jax.tree_util.keystr`` path (what ``--out`` saves with ``np.savez``)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m toyllora.distributed",
        description="Run the demo sweep with its runs split over jax.distributed processes; start one per "
                    "process, same arguments, own --process-id. Unset options come from JAX_COORDINATOR_ADDRESS, "
                    "JAX_NUM_PROCESSES, JAX_PROCESS_ID (none set: one process).",
        epilog="two local CPU processes:  JAX_PLATFORMS=cpu python -m toyllora.distributed --coordinator "
               "localhost:12355 --num-processes 2 --process-id 0 &  (and the same with --process-id 1)")
    p.add_argument("--coordinator", help="host:port of process 0, e.g. localhost:12355")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    p.add_argument("--timeout", type=int, default=120, help="seconds to wait for all processes (default 120)")
    p.add_argument("--grid-size", type=int, default=3, help="learning rates in the demo grid (default 3)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per setting (default 2)")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per run (default 20)")
    p.add_argument("--out", help="save the gathered History as .npz here; '{process_id}' in it is replaced")
    args = p.parse_args(argv)
    try:
        me = initialize(args.coordinator, args.num_processes, args.process_id, timeout_s=args.timeout)
        trainer, base, data, hp_grid, seeds = demo(args.grid_size, args.seeds, args.steps)
    except ValueError as e:
        print(f"toyllora.distributed: {e}", file=sys.stderr)
        return 2
    N = args.grid_size * args.seeds
    idx = share(N, me.num_processes, me.process_id)
    t0 = time.perf_counter()
    h = sweep(trainer, base, data, hp_grid, seeds)
    seconds = time.perf_counter() - t0
    final = h.metrics["train_loss"][..., -1]
    print(f"process {me.process_id}/{me.num_processes}: ran flat runs {idx.tolist()} of {N} on "
          f"{jax.local_device_count()} local device(s); gathered train_loss {h.metrics['train_loss'].shape}, "
          f"final mean {float(final.mean()):.6g}, in {seconds:.2f} s", flush=True)
    if args.out:
        np.savez(args.out.replace("{process_id}", str(me.process_id)), **flat_arrays(h))
    if me.num_processes > 1:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
