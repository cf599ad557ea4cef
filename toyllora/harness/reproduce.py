"""``toyllora reproduce``: run every registered claim under its master seeds (cached), then write REPORT.md.

The full run (the record) uses the master seeds ``0, 1, 2, 3, 4`` by default: each claim runs once per master
seed in this process (compiled programs are shared), and its record keeps every seed's verdict, labelled
``stable`` when they agree. ``--fast`` is a smoke test: one master seed and small setups; its REPORT says so,
and ``toyllora docs`` never writes it into the README ledger.

A record is reused when it is current (:func:`current_record`): same claim code and science modules, setup,
master seeds and mode (:func:`toyllora.harness.registry.cache_key`), computed with the same JAX version,
backend and ``JAX_ENABLE_X64`` setting, with its figure present. A current record whose plot code changed is
redrawn from the record without rerunning. ``force=True`` reruns anyway.

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
import time
import traceback
from pathlib import Path

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


def reproduce(out_dir="results", *, fast=False, seeds=None, force=False, only=None, progress=None) -> dict:
    """Run every registered claim (or the ids in ``only``) into ``out_dir`` and write ``REPORT.md``.

    Returns a summary dict with the lists ``ran`` and ``cached``, ``failed`` (id -> error line) and
    ``seconds`` (this invocation).
    """
    from tqdm.auto import tqdm

    seeds = registry.check_seeds(default_seeds(fast) if seeds is None else seeds)
    out_dir = check_out_dir(out_dir)
    claims = registry.all_claims()
    ids = list(claims) if only is None else [registry.get(c).id for c in only]
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    io.remove_stale_temps(out_dir)
    env = io.versions()
    ran, cached, failed, records, seconds = [], [], {}, {}, {}
    # progress: True shows the bar, False hides it, None shows it only on a terminal (tqdm's disable=None).
    bar = tqdm(ids, desc="claims", unit="claim", disable=None if progress is None else not progress)
    for cid in bar:
        bar.set_postfix_str(cid, refresh=True)
        rec = None if force else current_record(out_dir, cid, seeds, fast, env)
        try:
            if rec is not None:
                rec = ensure_figure(out_dir, rec)
                cached.append(cid)
            else:
                rec = registry.run(cid, seeds=seeds, fast=fast, out_dir=out_dir, progress=progress)
                ran.append(cid)
        except Exception as e:  # noqa: BLE001 -- a failing claim is reported, the others still run
            line = traceback.format_exception_only(type(e), e)[-1].strip()
            failed[cid] = {"flaw": claims[cid].flaw, "error": line, "traceback": traceback.format_exc()}
            continue
        records[cid] = rec
        seconds[cid] = rec["seconds"]
    bar.close()
    wall = time.perf_counter() - t0
    summary = {"ran": ran, "cached": cached, "failed": failed, "seconds": round(wall, 2), "fast": fast,
               "master_seeds": list(seeds), "claim_seconds": seconds,
               "claim_seconds_total": round(sum(seconds.values()), 2), "versions": env}
    ordered = [records[c] for c in claims if c in records]
    io.atomic_write_text(out_dir / "REPORT.md", report.render(ordered, fast=fast, seeds=seeds, registered=claims,
                                                              failed=failed, timing=summary))
    io.write_json(out_dir / TIMING_FILE, summary)
    return summary
