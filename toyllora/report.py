"""REPORT.md: the ledger of claims, their measured numbers and verdicts, from the JSON records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from toyllora.registry import FLAWS, VERDICTS

FLAW_TITLES = {"dropout": "Flaw 1 — dropout regularizes only in expectation",
               "zeroinit": "Flaw 2 — the zero-init start",
               "ripple": "Flaw 3 — the ripple effect of the scaling factor",
               "allora": "ALLoRA head to head"}


def summary_table(records: list[dict]) -> str:
    """Counts of verdicts by flaw, as a Markdown table."""
    head = "| flaw | " + " | ".join(VERDICTS) + " | total |\n|---|" + "---|" * (len(VERDICTS) + 1) + "\n"
    rows = []
    for flaw in FLAWS + ("all",):
        sel = [r for r in records if flaw == "all" or r["flaw"] == flaw]
        if not sel:
            continue
        c = Counter(r["verdict"] for r in sel)
        rows.append(f"| {flaw} | " + " | ".join(str(c.get(v, 0)) for v in VERDICTS) + f" | {len(sel)} |")
    return head + "\n".join(rows) + "\n"


def _numbers(m, prefix="", depth=0, lines=None, limit=40):
    lines = [] if lines is None else lines
    if isinstance(m, dict):
        for k, v in m.items():
            _numbers(v, f"{prefix}{k}." if prefix or True else k, depth + 1, lines, limit)
    elif isinstance(m, list):
        if m and all(isinstance(v, (int, float)) or v is None for v in m) and len(m) <= 8:
            lines.append(f"{prefix[:-1]} = {[_fmt(v) for v in m]}")
        elif m and all(isinstance(v, (int, float)) or v is None for v in m):
            lines.append(f"{prefix[:-1]} = [{len(m)} values, first {_fmt(m[0])}, last {_fmt(m[-1])}]")
    else:
        lines.append(f"{prefix[:-1]} = {_fmt(m)}")
    return lines


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render(records: list[dict], *, fast: bool, answers: dict | None = None) -> str:
    out = ["# toyllora REPORT", "",
           "The ledger of every registered claim of the ALLoRA paper (arXiv 2410.09692) and its reviews, "
           "measured on toy models by `toyllora reproduce`" + (" --fast (smaller grids and seeds)" if fast else "")
           + ". Each verdict is computed from the measurements by the rule stated before the run.", "",
           "## Summary", "", summary_table(records)]
    if answers:
        out += ["## Does ALLoRA fix it?", ""]
        for flaw, text in answers.items():
            out += [f"- **{FLAW_TITLES.get(flaw, flaw)}**: {text}"]
        out.append("")
    for flaw in FLAWS:
        sel = [r for r in records if r["flaw"] == flaw]
        if not sel:
            continue
        out += [f"## {FLAW_TITLES[flaw]}", ""]
        for r in sel:
            out += [f"### `{r['id']}` — **{r['verdict']}**", "",
                    f"- statement: {r['statement']}", f"- source: {r['source']}", f"- rule: {r['rule']}",
                    f"- seconds: {r['seconds']}", ""]
            nums = _numbers(r["measurements"])
            if nums:
                out += ["<details><summary>measured numbers</summary>", "", "```"] + nums[:60] + \
                       (["..."] if len(nums) > 60 else []) + ["```", "</details>", ""]
            for fig in r["figures"]:
                out += [f"![{r['id']}]({fig})", ""]
    return "\n".join(out) + "\n"


def load_records(out_dir: Path, ids: list[str]) -> list[dict]:
    return [json.loads((Path(out_dir) / f"{i}.json").read_text()) for i in ids]
