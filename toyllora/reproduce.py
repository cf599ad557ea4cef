"""``toyllora reproduce``: every claim (cached by config and code version), then REPORT.md."""

from __future__ import annotations

import json
import time
from pathlib import Path

from toyllora import io, registry, report


def _cached(out_dir: Path, claim_id: str, key: str) -> bool:
    path = out_dir / f"{claim_id}.json"
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("cache_key") == key
    except (json.JSONDecodeError, OSError):
        return False


def reproduce(out_dir="results", *, fast=False, seed=0, force=False, progress=True) -> dict:
    """Run every registered claim into ``out_dir`` and write ``out_dir/REPORT.md``; returns a summary."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    claims = registry.all_claims()
    t0 = time.perf_counter()
    ran, skipped = [], []
    bar = tqdm(list(claims), desc="claims", disable=not progress)
    for cid in bar:
        bar.set_postfix_str(cid)
        if not force and _cached(out_dir, cid, registry.cache_key(cid, seed, fast)):
            skipped.append(cid)
            continue
        registry.run(cid, seed=seed, fast=fast, out_dir=out_dir)
        ran.append(cid)
    records = report.load_records(out_dir, list(claims))
    io.atomic_write_text(out_dir / "REPORT.md", report.render(records, fast=fast))
    return {"ran": ran, "skipped": skipped, "seconds": time.perf_counter() - t0}
