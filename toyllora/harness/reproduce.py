"""``toyllora reproduce``: run every registered claim under its master seeds (cached), then write REPORT.md.

The full run (the record) uses the master seeds ``0, 1, 2, 3, 4`` by default: each claim runs once per master
seed in this process (compiled programs are shared), and its record keeps every seed's verdict, labelled
``stable`` when they agree. ``--fast`` is a smoke test: one master seed and small setups; its REPORT says so,
and ``toyllora docs`` never writes it into the README ledger.

A record is reused when it is current (:func:`current_record`): same claim code and science modules, setup,
master seeds and mode (:func:`toyllora.harness.registry.cache_key`), computed with the same JAX version,
backend and ``JAX_ENABLE_X64`` setting, with its figure present. A current record whose plot code changed is
redrawn from the record without rerunning. ``force=True`` reruns anyway.

``jobs=N`` (``--jobs N``) measures the claims that are not cached in ``N`` worker processes; ``jobs="auto"`` (the
CLI's default) takes one per CPU core on a CPU backend and 1 (this process) on an accelerator. A worker's task is
one claim folder (``zeroinit``, ``dropout``, ``ripple``, ``allora``, ``lora``, ``transfer``: its claims share runs
cached in-process) at one master seed, so the master seeds of the heaviest folder spread over the workers; tasks
are handed out largest first (by the seconds of the last run of the same mode in ``out_dir``, else by those
shipped with toyllora, :func:`task_weights`). This process joins a
claim's seeds as soon as all are in and hands the claim back to the pool to build, draw and write its record
(one process drawing every figure was the bottleneck of a warm fast run). With one process (``jobs=1``) the
claims run folder by folder, each folder's caches released when the next starts, as in a worker.
The records are the same as with one process; the workers share the compile cache.
A claim whose statistic is a wall-clock timing (``WALL_CLOCK = True``: ``allora.overhead``, ``transfer.overhead``)
runs in this process after the workers have finished, alone on the machine.

A claim that raises is reported (in REPORT.md and the returned summary) and the others still run; an
interrupt (Ctrl-C) stops the run and keeps every finished result. Temporary files left by a killed run are
removed at the start of the next one. Do not point two runs at the same folder at once.

Written, all atomically: ``<id>.json`` and ``figures/<id>.png|pdf`` per claim, ``REPORT.md``, and
``reproduce_time.json`` (wall time of this invocation and per-claim seconds). A record is deterministic for
given seeds, code and environment except its ``seconds`` field (and the timings of ``allora.overhead``).

Example::

    toyllora reproduce --fast --out results      # the smoke test, one master seed
    toyllora reproduce --out results             # the record: master seeds 0-4
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from toyllora.claims import parse_id
from toyllora.harness import io, registry, report

ENV_FIELDS = ("jax", "jaxlib", "backend", "x64")  # a result computed under other values is not reused
TIMING_FILE = "reproduce_time.json"
FULL_SEEDS = (0, 1, 2, 3, 4)
FAST_SEEDS = (0,)


def default_seeds(fast: bool) -> tuple[int, ...]:
    """Master seeds when none are given: one for the smoke test, five for the record."""
    return FAST_SEEDS if fast else FULL_SEEDS


def check_out_dir(out_dir) -> Path:
    """``out_dir`` as a Path; ValueError if it exists and is not a folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out: {str(out_dir)!r} exists and is not a folder; allowed: a folder path")
    return out_dir


def current_record(out_dir: Path, claim_id: str, seeds, fast: bool, env: dict | None = None) -> dict | None:
    """The record of ``claim_id`` in ``out_dir`` if it is current (see the module docstring), else None."""
    env = io.versions() if env is None else env
    path = Path(out_dir) / f"{claim_id}.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or rec.get("cache_key") != registry.cache_key(claim_id, seeds, fast):
        return None
    if any(rec.get("versions", {}).get(k) != env.get(k) for k in ENV_FIELDS):
        return None
    if rec.get("verdict") not in registry.VERDICTS:
        return None
    return rec


def ensure_figure(out_dir: Path, rec: dict) -> dict:
    """Redraw a current record's figure from the record when it is missing or its plot code changed."""
    out_dir = Path(out_dir)
    have = all((out_dir / f).exists() and (out_dir / f).with_suffix(".pdf").exists() for f in rec["figures"])
    key = registry.figure_key(rec["id"])
    if have and rec.get("figure_key") == key:
        return rec
    registry.draw(registry.get(rec["id"]), rec, out_dir / "figures")
    rec = {**rec, "figure_key": key}
    io.write_json(out_dir / f"{rec['id']}.json", rec)
    return rec


def default_jobs() -> int:
    """Worker processes for ``jobs="auto"``: the CPU cores this process may use on a CPU backend (the pool
    never starts more workers than there are claim folders to run); 1 on an accelerator, where each process
    would claim the device's memory.

    >>> default_jobs() >= 1
    True
    """
    import jax

    if jax.default_backend() != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores)


def check_jobs(jobs) -> int:
    """``jobs`` as an integer >= 1 (``"auto"``: :func:`default_jobs`); ValueError otherwise."""
    if jobs == "auto":
        return default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: must be an integer >= 1 (worker processes) or 'auto', got {jobs!r}")
    return jobs


def folder_groups(ids, weights: dict | None = None) -> list[list[str]]:
    """The ids grouped by claim folder (claims of a folder share in-process runs), heaviest group first:
    by the summed ``weights`` (seconds of an earlier run; a claim without one counts as the mean of the
    others, or 1).

    >>> folder_groups(["a.x", "b.y", "a.z"], {"a.x": 1, "b.y": 5})
    [['b.y'], ['a.x', 'a.z']]
    """
    weights = dict(weights or {})
    known = [float(weights[i]) for i in ids if i in weights]
    default = sum(known) / len(known) if known else 1.0
    weight = lambda g: sum(float(weights.get(i, default)) for i in g)
    return sorted(_groups(ids), key=weight, reverse=True)


def _groups(ids) -> list[list[str]]:
    """The ids grouped by claim folder, folders in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for cid in ids:
        groups.setdefault(parse_id(cid)[0], []).append(cid)
    return list(groups.values())


def by_folder(ids) -> list[str]:
    """The ids with each claim folder's claims together, folders in order of first appearance (claims of a
    folder share in-process runs, released when the next folder starts).

    >>> by_folder(["a.x", "b.y", "a.z"])
    ['a.x', 'a.z', 'b.y']
    """
    return [cid for group in _groups(ids) for cid in group]


def _failure(claims, cid, e) -> dict:
    line = traceback.format_exception_only(type(e), e)[-1].strip()
    return {"flaw": claims[cid].flaw, "error": line, "traceback": traceback.format_exc()}


def _run_claim(claims, cid, seeds, fast: bool, out_dir, progress) -> tuple[dict | None, dict | None]:
    """``(record, None)``, or ``(None, failure)`` when the claim raises (the others still run)."""
    try:
        return registry.run(cid, seeds=seeds, fast=fast, out_dir=out_dir, progress=progress), None
    except Exception as e:  # noqa: BLE001 -- a failing claim is reported, the others still run
        return None, _failure(claims, cid, e)


HINTS_FILE = Path(__file__).with_name("claim_seconds.json")


def task_weights(out_dir, fast: bool) -> tuple[dict, int]:
    """``(claim seconds, over how many master seeds)`` to order the pool's tasks by: the folder's own
    ``reproduce_time.json`` when it is of the same mode, else the seconds shipped with toyllora
    (``claim_seconds.json``, per seed, from a measured run). Without them a new folder ran the transfer rung,
    a third of a full run, last: its five tasks on two workers made the tail.

    >>> w, n = task_weights("/nonexistent", fast=False)
    >>> n, w["transfer.zeroinit-escape"] > w["dropout.crossover"]
    (1, True)
    """
    try:
        timing = json.loads((Path(out_dir) / TIMING_FILE).read_text())
        if bool(timing.get("fast")) == bool(fast) and isinstance(timing.get("claim_seconds"), dict):
            return timing["claim_seconds"], len(timing.get("master_seeds", [0]))
    except (OSError, json.JSONDecodeError, AttributeError, TypeError):
        pass
    try:
        return dict(json.loads(HINTS_FILE.read_text())["fast" if fast else "full"]), 1
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return {}, 1


def worker_tasks(ids, seeds, claims: dict, weights: dict | None = None,
                 weight_seeds: int = 1) -> list[tuple[list[str], tuple[int, ...]]]:
    """The pool's tasks ``(ids, seeds)``: a claim folder (its claims share runs in-process) at one master seed
    each, heaviest first (``weights``: seconds of an earlier run over ``weight_seeds`` master seeds, as in
    :func:`folder_groups`); a folder with a claim that measures its seeds together (``measure_many``) is one
    task over all seeds.

    >>> from types import SimpleNamespace as NS
    >>> plain = {i: NS(module=NS()) for i in ("a.x", "b.y")}
    >>> worker_tasks(["a.x", "b.y"], (0, 1), plain, {"a.x": 1.0, "b.y": 4.0})
    [(['b.y'], (0,)), (['b.y'], (1,)), (['a.x'], (0,)), (['a.x'], (1,))]
    """
    weights = {k: float(v) / max(1, weight_seeds) for k, v in (weights or {}).items()}
    tasks = []
    for group in folder_groups(ids, weights):
        together = any(hasattr(claims[c].module, "measure_many") for c in group)
        tasks += [(group, tuple(seeds))] if together else [(group, (s,)) for s in seeds]
    return tasks


def next_task(pending, cold_running) -> int:
    """Index in ``pending`` (tasks ``(ids, seeds)`` in order of preference) of the task a free worker starts:
    the first whose claim folder has no task running before any of its tasks has finished (``cold_running``:
    such folders). Two workers starting one folder's master seeds together compiled its programs twice, since
    the compile cache is written only as each finishes compiling; a folder's later seeds load them instead.
    When every pending task is of such a folder, the first one still starts (a core is not left idle).

    >>> next_task([(["t.a"], (1,)), (["t.a"], (2,)), (["d.b"], (0,))], cold_running={"t"})
    2
    >>> next_task([(["t.a"], (1,))], cold_running={"t"})
    0
    """
    for i, (ids, _) in enumerate(pending):
        if parse_id(ids[0])[0] not in cold_running:
            return i
    return 0


_WORKER = {"folder": None}   # the claim folder a worker process measured last


def release_folder_caches(folder: str) -> None:
    """Free what a worker holds for a claim folder it has finished: JAX's compiled programs and the folder's
    in-process run caches (every ``cache_clear`` of ``toyllora.claims.<folder>.*``). Caches only save time (a
    record never depends on what its process ran before), and without this a worker that has measured
    several folders holds all their programs at once (two such workers ran out of 24 GiB)."""
    import gc
    import sys

    import jax

    prefix = f"toyllora.claims.{folder}"
    for name, module in list(sys.modules.items()):
        if module is not None and (name == prefix or name.startswith(prefix + ".")):
            for value in list(vars(module).values()):
                clear = getattr(value, "cache_clear", None)
                if callable(clear):
                    clear()
    jax.clear_caches()
    gc.collect()


def peak_memory_mb() -> float | None:
    """This process's peak resident memory in MiB (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:   # not POSIX
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def _measure_task(out_dir: str, ids: list[str], seeds, fast: bool, cache_folder: str | None) -> dict:
    """A worker's job: measure ``ids`` (in order) at ``seeds``, writing nothing. Returns ``{"claims": {id:
    measured | failure}, "peak_mb"}`` (:func:`toyllora.harness.registry.measure_seeds`; a failure is a dict
    with the key ``error``). A worker that last measured another folder releases that folder's caches first."""
    from toyllora import compile_cache

    if cache_folder is not None:
        compile_cache.enable(cache_folder)
    folder = parse_id(ids[0])[0]
    if _WORKER["folder"] not in (None, folder):
        release_folder_caches(_WORKER["folder"])
    _WORKER["folder"] = folder
    claims = registry.all_claims()
    out = {}
    for cid in ids:
        try:
            out[cid] = registry.measure_seeds(cid, seeds, fast, out_dir, progress=False)
        except Exception as e:  # noqa: BLE001 -- a failing claim is reported, the others still run
            out[cid] = _failure(claims, cid, e)
    return {"claims": out, "peak_mb": peak_memory_mb()}


def _worker_died(claims, cid, e) -> dict:
    """The failure of a claim whose worker process died (its task raised in the pool)."""
    return {"flaw": claims[cid].flaw, "traceback": "", "error": f"worker process failed: {type(e).__name__}: {e}"}


def _write_task(out_dir: str, cid: str, seeds, fast: bool, measured: dict) -> dict | None:
    """Build, draw and write one claim's record (:func:`toyllora.harness.registry.write_record`), in a worker
    once the claim's master seeds are joined: figures are drawn by the pool, not by this process alone.
    Returns None, or the failure."""
    try:
        registry.write_record(cid, seeds, fast, measured, out_dir)
        return None
    except Exception as e:  # noqa: BLE001 -- a failing claim is reported, the others still run
        return _failure(registry.all_claims(), cid, e)


class _Joiner:
    """Collects a claim's measurements from the tasks of its master seeds: :meth:`join` gives the joined
    measurement once all are in (the first failure goes into ``results``); :meth:`add` also writes the record
    in this process."""

    def __init__(self, out_dir: Path, todo, seeds, fast: bool):
        self.out_dir, self.seeds, self.fast = out_dir, tuple(seeds), fast
        self.parts = {cid: {} for cid in todo}
        self.results = {}
        self._joined = set()

    def join(self, cid: str, seeds, got: dict) -> dict | None:
        """Add one task's result for ``cid``: the claim's measurement over all its master seeds (in seed
        order, as :func:`toyllora.harness.registry.write_record` takes it) once every seed is in, else None.
        A failure goes into ``results`` at once; a claim already joined or failed takes nothing more."""
        if cid in self.results or cid in self._joined:
            return None
        if "error" in got:
            self.results[cid] = got
            return None
        self.parts[cid].update(zip(seeds, zip(got["measurements"], [got["seconds"] / len(seeds)] * len(seeds))))
        if len(self.parts[cid]) < len(self.seeds):
            return None
        parts = [self.parts[cid][s] for s in self.seeds]
        self._joined.add(cid)
        return {"measurements": [m for m, _ in parts], "seconds": sum(t for _, t in parts),
                "compiler": got["compiler"]}

    def add(self, cid: str, seeds, got: dict) -> bool:
        """:meth:`join`, writing the record in this process; True when the claim is finished (written or
        failed)."""
        if cid in self.results or cid in self._joined:
            return False
        measured = self.join(cid, seeds, got)
        if measured is not None:
            self.results[cid] = _write_task(str(self.out_dir), cid, self.seeds, self.fast, measured)
        return cid in self.results


def _run_parallel(out_dir: Path, todo: list[str], seeds, fast: bool, jobs: int,
                  bar) -> tuple[dict, float | None]:
    """Measure ``todo`` in ``jobs`` worker processes, one claim folder at one master seed per task
    (:func:`worker_tasks`, started in the order :func:`next_task` picks as workers come free); this process
    joins each claim's seeds and, as soon as all are in, hands the claim back to the pool, ahead of the
    measuring tasks left, to build, draw and write its record (:func:`_write_task`). Returns ``({id: None | failure},
    the largest peak memory of a worker in MiB or None)``."""
    import concurrent.futures as cf
    import multiprocessing

    from toyllora import compile_cache

    weights, weight_seeds = task_weights(out_dir, fast)
    claims = registry.all_claims()
    tasks = worker_tasks(todo, seeds, claims, weights, weight_seeds)
    joiner, peaks = _Joiner(out_dir, todo, seeds, fast), []
    workers = min(jobs, len(tasks))
    pending, writes, futures = list(tasks), [], {}
    started, finished_folders = set(), set()   # folders with a task started / a measuring task finished
    ctx = multiprocessing.get_context("spawn")   # a fresh interpreter: JAX is not fork-safe
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:

        def fill():
            # a task goes to the pool only when a worker is free, so the order is chosen here: writing tasks
            # (record and figure, of a claim whose seeds are joined) first, then measuring tasks by next_task
            while len(futures) < workers and (writes or pending):
                if writes:
                    cid, measured = writes.pop(0)
                    futures[pool.submit(_write_task, str(out_dir), cid, joiner.seeds, fast, measured)] = \
                        ("write", [cid], None)
                    continue
                group, task_seeds = pending.pop(next_task(pending, started - finished_folders))
                started.add(parse_id(group[0])[0])
                futures[pool.submit(_measure_task, str(out_dir), group, task_seeds, fast,
                                    compile_cache.folder())] = ("measure", group, task_seeds)

        try:
            fill()
            while futures:
                finished, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    kind, group, task_seeds = futures.pop(fut)
                    if kind == "write":
                        try:
                            joiner.results[group[0]] = fut.result()
                        except Exception as e:  # noqa: BLE001 -- a worker that died: the claim failed
                            joiner.results[group[0]] = _worker_died(claims, group[0], e)
                        bar.update(1)
                        continue
                    finished_folders.add(parse_id(group[0])[0])
                    try:
                        result = fut.result()
                        got = result["claims"]
                        if result["peak_mb"] is not None:
                            peaks.append(result["peak_mb"])
                    except Exception as e:  # noqa: BLE001 -- a worker that died: its claims failed
                        got = {cid: _worker_died(claims, cid, e) for cid in group}
                    for cid in group:
                        failed_before = cid in joiner.results
                        measured = joiner.join(cid, task_seeds, got[cid])
                        if measured is not None:
                            writes.append((cid, measured))
                        elif cid in joiner.results and not failed_before:
                            bar.update(1)
                    bar.set_postfix_str(f"{parse_id(group[0])[0]} seed {','.join(map(str, task_seeds))}",
                                        refresh=True)
                fill()
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return joiner.results, (max(peaks) if peaks else None)


def reproduce(out_dir="results", *, fast=False, seeds=None, force=False, only=None, progress=None,
              jobs: int | str = 1) -> dict:
    """Run every registered claim (or the ids in ``only``) into ``out_dir`` and write ``REPORT.md``.

    ``jobs``: worker processes for the claims that are not cached (1: all in this process; ``"auto"``:
    :func:`default_jobs`).
    Returns a summary dict with the lists ``ran`` and ``cached``, ``failed`` (id -> error line) and
    ``seconds`` (this invocation).
    """
    from tqdm.auto import tqdm

    seeds = registry.check_seeds(default_seeds(fast) if seeds is None else seeds)
    jobs = check_jobs(jobs)
    out_dir = check_out_dir(out_dir)
    claims = registry.all_claims()
    ids = list(claims) if only is None else [registry.get(c).id for c in only]
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    io.remove_stale_temps(out_dir)
    env = io.versions()
    ran, cached, failed, records = [], [], {}, {}
    worker_peak = None
    # progress: True shows the bar, False hides it, None shows it only on a terminal (tqdm's disable=None).
    bar = tqdm(ids, desc="claims", unit="claim", disable=None if progress is None else not progress)
    todo = []
    for cid in ids:
        rec = None if force else current_record(out_dir, cid, seeds, fast, env)
        if rec is None:
            todo.append(cid)
            continue
        try:
            records[cid] = ensure_figure(out_dir, rec)
            cached.append(cid)
        except Exception as e:  # noqa: BLE001 -- a failing claim is reported, the others still run
            failed[cid] = _failure(claims, cid, e)
        bar.update(1)
    parallel = jobs > 1 and (len({parse_id(c)[0] for c in todo}) > 1 or len(seeds) > 1)
    # a wall-clock timing claim never shares the cores with a worker: it runs here, after the pool
    alone = [c for c in todo if claims[c].wall_clock] if parallel else list(todo)
    pooled = [c for c in todo if c not in alone]
    if pooled:
        results, worker_peak = _run_parallel(out_dir, pooled, seeds, fast, jobs, bar)
        for cid, fail in results.items():
            if fail is not None:
                failed[cid] = fail
                continue
            records[cid] = json.loads((out_dir / f"{cid}.json").read_text())
            ran.append(cid)
    folder = None
    for cid in by_folder(alone):
        if folder not in (None, parse_id(cid)[0]):
            # what workers do between folders: one process holding every folder's compiled programs hit
            # the kernel's limit on memory mappings (LLVM: "Unable to allocate section memory") in the
            # transfer rung of a full run with --jobs 1
            release_folder_caches(folder)
        folder = parse_id(cid)[0]
        bar.set_postfix_str(cid, refresh=True)
        rec, fail = _run_claim(claims, cid, seeds, fast, out_dir, progress)
        if fail is None:
            records[cid] = rec
            ran.append(cid)
        else:
            failed[cid] = fail
        bar.update(1)
    ran = [c for c in ids if c in ran]
    seconds = {c: records[c]["seconds"] for c in ids if c in records}
    bar.close()
    wall = time.perf_counter() - t0
    summary = {"ran": ran, "cached": cached, "failed": failed, "seconds": round(wall, 2), "fast": fast, "jobs": jobs,
               "master_seeds": list(seeds), "claim_seconds": seconds,
               "claim_seconds_total": round(sum(seconds.values()), 2), "versions": env,
               "worker_peak_mb": worker_peak, "peak_mb": peak_memory_mb()}
    ordered = [records[c] for c in claims if c in records]
    io.atomic_write_text(out_dir / "REPORT.md", report.render(ordered, fast=fast, seeds=seeds, registered=claims,
                                                              failed=failed, timing=summary))
    io.write_json(out_dir / TIMING_FILE, summary)
    return summary
