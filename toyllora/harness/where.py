"""``toyllora where ID``: one hop from a claim id to everything about it — its file, proofs, tests, figure
script and notebook sections.

Example:
    >>> from toyllora.harness import where
    >>> where.locate("zeroinit.hessian")["claim"]
    'toyllora/claims/zeroinit/hessian.py'
"""

from __future__ import annotations

import re
from pathlib import Path

from toyllora import claims as claims_pkg
from toyllora.harness import figures, registry

ROOT = Path(__file__).resolve().parents[2]
PROOF_CLAIM = re.compile(r"^Claims?:\s*(.+?)\s*$", re.M)
HEADING = re.compile(r"^# #+\s+(.*)$")  # a Markdown heading inside a jupytext py:percent cell


def _rel(p: Path) -> str:
    return Path(p).resolve().relative_to(ROOT).as_posix()


def _mentions(text: str, claim_id: str) -> bool:
    folder, stem = claims_pkg.parse_id(claim_id)
    patterns = (re.escape(claim_id) + r"(?![a-z0-9-])", re.escape(claims_pkg.module_name(claim_id)) + r"\b",
                rf"from toyllora\.claims\.{folder} import [^\n]*\b{stem}\b")
    return any(re.search(p, text) for p in patterns)


def locate(claim_id: str) -> dict:
    """``{"claim", "proofs", "tests", "figure", "notebooks"}``: repository-relative paths (notebook entries
    as ``path § heading``)."""
    c = registry.get(claim_id)
    proofs = sorted(_rel(p) for p in (ROOT / "proofs").glob("*.md")
                    if any(claim_id in [x.strip().strip("`") for x in m.split(",")]
                           for m in PROOF_CLAIM.findall(p.read_text())))
    tests = sorted(_rel(p) for p in (ROOT / "tests").glob("*.py") if _mentions(p.read_text(), claim_id))
    sections = []
    for nb in sorted((ROOT / "notebooks").glob("*.py")):
        heading = None
        for line in nb.read_text().splitlines():
            m = HEADING.match(line)
            if m:
                heading = m.group(1).strip()
            elif _mentions(line, claim_id):
                entry = f"{_rel(nb)} § {heading}" if heading else _rel(nb)
                if entry not in sections:
                    sections.append(entry)
    script = figures.script_path(claim_id)
    return {"claim": _rel(c.path), "proofs": proofs, "tests": tests,
            "figure": _rel(script) if script.exists() else None, "notebooks": sections}


def render(claim_id: str) -> str:
    """The lines ``toyllora where`` prints."""
    loc = locate(claim_id)
    rows = [("claim", loc["claim"]), ("proofs", ", ".join(loc["proofs"]) or "—"),
            ("tests", ", ".join(loc["tests"]) or "—"), ("figure", loc["figure"] or "—"),
            ("notebook", "; ".join(loc["notebooks"]) or "—")]
    return "\n".join(f"{k:<9} {v}" for k, v in rows)
