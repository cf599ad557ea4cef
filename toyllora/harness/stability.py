"""``toyllora stability``: does a verdict labelled stable hold at master seeds the run did not use?

A full run labels a verdict **stable** when every one of its master seeds (0-4) gives it. This compares
those records (``results``) with a run of the same claims at other master seeds (``against``): per claim,
its verdict and label in ``results``, the verdicts at the new seeds, and whether a stable label held.
Records of a claim whose code or setup differ between the two runs are not compared.

Example::

    toyllora reproduce --seeds 5,6,7 --out results-5-7 --only dropout.short-vs-long
    toyllora stability --results results --against results-5-7
"""

from __future__ import annotations

import json
from pathlib import Path

from toyllora.harness import registry

STATUSES = ("holds", "differs", "unstable", "other code", "no new seeds")


def _key_parts(rec: dict) -> dict:
    """The ``code=`` and ``setup=`` parts of a record's cache key (what must match for a comparison)."""
    parts = registry.cache_key_parts(rec.get("cache_key", ""))
    return {k: parts.get(k) for k in ("code", "setup")}


def _load(folder: Path, cid: str, field: str) -> dict | None:
    path = folder / f"{cid}.json"
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec.get("mode") == "fast":
        raise ValueError(f"{field}: {path} is a --fast record (a smoke test); compare full runs only")
    return rec


def compare(results, against) -> list[dict]:
    """One row per claim with a record in both folders (registry order): ``id``, ``verdict`` and ``label``
    (in ``results``), ``seeds`` (``results``' master seeds), ``new`` ({seed: verdict} at the seeds of
    ``against`` that ``results`` did not use) and ``status`` (one of :data:`STATUSES`)."""
    results, against = Path(results), Path(against)
    for field, folder in (("results", results), ("against", against)):
        if not folder.is_dir():
            raise ValueError(f"{field}: {str(folder)!r} is not a folder of records")
    rows = []
    for cid in registry.all_claims():
        a, b = _load(results, cid, "results"), _load(against, cid, "against")
        if a is None or b is None:
            continue
        seeds = [int(s) for s in a.get("master_seeds", [])]
        new = {int(s): v for s, v in b.get("verdicts_by_seed", {}).items() if int(s) not in seeds}
        label = a.get("stability", {}).get("label", "stable")
        if _key_parts(a) != _key_parts(b):
            status = "other code"
        elif not new:
            status = "no new seeds"
        elif label != "stable":
            status = "unstable"
        else:
            status = "holds" if all(v == a["verdict"] for v in new.values()) else "differs"
        rows.append({"id": cid, "verdict": a["verdict"], "label": label, "seeds": seeds, "new": new,
                     "status": status})
    if not rows:
        raise ValueError(f"against: no record in {str(against)!r} of a claim recorded in {str(results)!r}")
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a markdown table and a one-line summary of the stable labels that were checked.

    >>> print(table([{"id": "a.b", "verdict": "supported", "label": "stable", "seeds": [0, 1],
    ...               "new": {5: "inconclusive"}, "status": "differs"}]).splitlines()[-1])
    0 of 1 stable labels hold at the other seeds; differ: a.b
    """
    out = ["| claim | verdict (label) | at the other seeds | stable label |", "|---|---|---|---|"]
    for r in rows:
        new = ", ".join(f"{s}: {v}" for s, v in sorted(r["new"].items())) or "—"
        out.append(f"| `{r['id']}` | {r['verdict']} ({r['label']}) | {new} | {r['status']} |")
    checked = [r for r in rows if r["status"] in ("holds", "differs")]
    held = sum(r["status"] == "holds" for r in checked)
    out += ["", f"{held} of {len(checked)} stable labels hold at the other seeds" +
            (f"; differ: {', '.join(r['id'] for r in checked if r['status'] == 'differs')}"
             if held < len(checked) else "")]
    return "\n".join(out)
