"""``toyllora reproduce``: run every registered claim (cached), then write REPORT.md and the run's timing.

For each claim in registry order, a current result in ``out_dir/<id>.json`` is reused; otherwise the claim
runs through :func:`toyllora.registry.run`, which writes its JSON and figures atomically. A result is
current when its ``cache_key`` (claim id, seed, fast, hash of the toyllora source) matches and it was
computed with the same JAX version, backend and ``JAX_ENABLE_X64`` setting; ``force=True`` reruns anyway.

A claim that raises is reported (in REPORT.md and the returned summary) and the others still run; an
interrupt (Ctrl-C) stops the run and keeps every finished result. Temporary files left by a killed run
are removed at the start of the next one. Do not point two runs at the same folder at once.

Written, all atomically: ``<id>.json`` and ``figures/`` per claim, ``REPORT.md``, and
``reproduce_time.json`` (wall time of this invocation and per-claim seconds; read by ``toyllora bench``).
The per-claim JSON is deterministic for a given seed, code and environment except its ``seconds`` field.

Example::

    toyllora reproduce --fast --out results     # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from toyllora import io, registry, report

ENV_FIELDS = ("jax", "jaxlib", "backend", "x64")  # a result computed under other values is not reused
TIMING_FILE = "reproduce_time.json"


def check_out_dir(out_dir) -> Path:
    """``out_dir`` as a Path; ValueError if it exists and is not a folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out: {str(out_dir)!r} exists and is not a folder; allowed: a folder path")
    return out_dir


def current_record(out_dir: Path, claim_id: str, seed: int, fast: bool, env: dict) -> dict | None:
    """The cached record of ``claim_id`` if it is current (see the module docstring), else None."""
    path = Path(out_dir) / f"{claim_id}.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or rec.get("cache_key") != registry.cache_key(claim_id, seed, fast):
        return None
    if any(rec.get("versions", {}).get(k) != env.get(k) for k in ENV_FIELDS):
        return None
    if rec.get("verdict") not in registry.VERDICTS:
        return None
    if not all((Path(out_dir) / f).exists() for f in rec.get("figures", [])):
        return None
    return rec


def reproduce(out_dir="results", *, fast=False, seed=0, force=False, progress=None) -> dict:
    """Run every registered claim into ``out_dir``, write ``REPORT.md``; returns a summary dict with the
    lists ``ran`` and ``cached``, ``failed`` (id -> error line) and ``seconds`` (this invocation)."""
    from tqdm.auto import tqdm

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
    out_dir = check_out_dir(out_dir)
    claims = registry.all_claims()
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    io.remove_stale_temps(out_dir)
    env = io.versions()
    ran, cached, failed, records, seconds = [], [], {}, {}, {}
    # progress: True shows the bar, False hides it, None shows it only on a terminal (tqdm's disable=None).
    bar = tqdm(list(claims), desc="claims", unit="claim", disable=None if progress is None else not progress)
    for cid in bar:
        bar.set_postfix_str(cid, refresh=True)
        rec = None if force else current_record(out_dir, cid, seed, fast, env)
        if rec is not None:
            cached.append(cid)
        else:
            try:
                rec = registry.run(cid, seed=seed, fast=fast, out_dir=out_dir)
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
               "seed": seed, "claim_seconds": seconds, "claim_seconds_total": round(sum(seconds.values()), 2),
               "versions": env}
    ordered = [records[c] for c in claims if c in records]
    io.atomic_write_text(out_dir / "REPORT.md", report.render(ordered, fast=fast, seed=seed, registered=claims,
                                                              failed=failed, timing=summary))
    io.write_json(out_dir / TIMING_FILE, summary)
    return summary
