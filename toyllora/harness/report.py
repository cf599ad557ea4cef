"""REPORT.md and the README ledger: every claim, its measured numbers and verdict, from the JSON records.

Nothing here decides a verdict: verdicts come from each claim's rule (:mod:`toyllora.claims`). Every verdict
is shown with its stability over the master seeds: **stable** when every seed gave it, otherwise **unstable**
with the counts. The answer to "does ALLoRA fix it?" is computed from the *stable* verdicts of the claims
listed in :data:`FIX_EVIDENCE`; an unstable or missing cited verdict makes the answer say so instead of
guessing.

Example:
    >>> rec = {"id": "zeroinit.x", "flaw": "zeroinit", "verdict": "supported"}
    >>> print(summary_table([rec]).splitlines()[2])
    | zeroinit | 1 | 0 | 0 | 0 | 1 |
    >>> fix_answer("overall", {}, registered=())[:18]
    '**Not answered.** '
    >>> verdict_label({"verdict": "supported", "stability": {"label": "unstable", "counts": {"supported": 3,
    ...                "partly supported": 2}}})
    'supported (unstable: 3 supported, 2 partly supported)'
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from toyllora.claims import FLAWS, VERDICTS

FLAW_TITLES = {"dropout": "Flaw 1 — dropout regularizes only in expectation",
               "zeroinit": "Flaw 2 — the zero-init start",
               "ripple": "Flaw 3 — the ripple effect of the scaling factor",
               "allora": "ALLoRA head to head",
               "transfer": "The transfer rung — a tiny pretrained transformer",
               "overall": "Overall — ALLoRA against LoRA"}

# "Does ALLoRA fix it?": the claims each answer rests on (their verdicts decide the answer).
FIX_EVIDENCE = {
    "dropout": ("dropout.allora-fix",),
    "zeroinit": ("zeroinit.escape-time", "zeroinit.allora-landscape"),
    "ripple": ("ripple.performance", "allora.input-gradient"),
    "overall": ("allora.vs-lora", "allora.vs-plain-lora"),
}

SCALAR_ROWS = 20  # scalar measurements shown in the open; the rest go into a <details> block


# ---------------------------------------------------------------------------------------------- summary
def is_stable(rec: dict) -> bool:
    """Whether every master seed of a record gave its verdict (records without the field: one seed)."""
    return rec.get("stability", {}).get("label", "stable") == "stable"


def verdict_label(rec: dict) -> str:
    """``"supported (stable, 5 seeds)"`` or ``"supported (unstable: 3 supported, 2 not supported)"``."""
    st = rec.get("stability")
    if not st:
        return rec["verdict"]
    if st["label"] == "stable":
        n = sum(st["counts"].values())
        if n == 1:
            return f"{rec['verdict']} (1 master seed: stability not measured)"
        return f"{rec['verdict']} (stable, {n} seeds)"
    order = sorted(st["counts"].items(), key=lambda kv: (-kv[1], VERDICTS.index(kv[0])))
    counts = ", ".join(f"{n} {v}" for v, n in order)
    return f"{rec['verdict']} (unstable: {counts})"


def summary_table(records: list[dict], failed: dict | None = None) -> str:
    """Counts of verdicts by flaw (and failed runs, if any), as a Markdown table."""
    failed = failed or {}
    cols = list(VERDICTS) + (["failed"] if failed else [])
    head = "| flaw | " + " | ".join(cols) + " | total |\n|---|" + "---:|" * (len(cols) + 1) + "\n"
    rows = []
    for flaw in FLAWS + ("all",):
        sel = [r for r in records if flaw == "all" or r["flaw"] == flaw]
        nfail = sum(1 for f in failed.values() if flaw == "all" or f.get("flaw") == flaw)
        if not sel and not nfail:
            continue
        c = Counter(r["verdict"] for r in sel)
        cells = [str(c.get(v, 0)) for v in VERDICTS] + ([str(nfail)] if failed else [])
        name = "**all**" if flaw == "all" else flaw
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {len(sel) + nfail} |")
    return head + "\n".join(rows) + "\n"


def fix_answer(topic: str, by_id: dict, registered) -> str:
    """The computed answer to "does ALLoRA fix it?" for ``topic`` (a key of :data:`FIX_EVIDENCE`).

    ``by_id`` maps claim ids to records; ``registered`` is the collection of registered claim ids.
    Yes = every cited claim supported; No = every cited claim not supported; Undecided = every cited claim
    inconclusive; Partly = any other mix. A cited claim that is missing or unstable over the master seeds
    makes the answer "Not answered".
    """
    cited = FIX_EVIDENCE[topic]
    missing = []
    for cid in cited:
        if cid not in registered:
            missing.append(f"`{cid}` is not registered")
        elif cid not in by_id:
            missing.append(f"`{cid}` has no result in this run")
        elif not is_stable(by_id[cid]):
            missing.append(f"`{cid}` is unstable over the master seeds ({verdict_label(by_id[cid])})")
    have = [(cid, by_id[cid]["verdict"]) for cid in cited if cid in by_id and is_stable(by_id[cid])]
    evidence = "; ".join(f"`{cid}`: {v}" for cid, v in have)
    if missing:
        text = "**Not answered.** " + ", ".join(missing) + "."
        return text + (f" The cited claims with a stable verdict: {evidence}." if have else "")
    verdicts = {v for _, v in have}
    if verdicts == {"supported"}:
        word = "Yes"
    elif verdicts == {"not supported"}:
        word = "No"
    elif verdicts == {"inconclusive"}:
        word = "Undecided"
    else:
        word = "Partly"
    return f"**{word}** on these toys, going by {evidence}."


def fix_answers(records: list[dict], registered) -> dict:
    by_id = {r["id"]: r for r in records}
    answers = {topic: fix_answer(topic, by_id, registered) for topic in FIX_EVIDENCE}
    rung = transfer_map(records)
    if not rung:
        return answers
    for topic in answers:
        answers[topic] += " " + both_rungs(topic, by_id, rung)
    return answers


# ------------------------------------------------------------------------------ the transfer rung
def transfer_map(records: list[dict]) -> dict[str, str]:
    """``{toy claim id: transformer claim id}`` from the ``counterparts`` that transfer claims declare."""
    return {toy: r["id"] for r in records for toy in r.get("counterparts", ())}


def transfer_cell(rec: dict, by_id: dict, rung: dict) -> str:
    """How a toy verdict compares with its transformer counterpart: agrees / differs / undecided (the
    transformer verdict is inconclusive) / not measured.

    >>> toy = {"id": "a.x", "verdict": "supported"}
    >>> tr = {"id": "transfer.x", "verdict": "not supported", "counterparts": ["a.x"]}
    >>> transfer_cell(toy, {"transfer.x": tr}, {"a.x": "transfer.x"})
    'differs (`transfer.x`: not supported)'
    >>> transfer_cell(toy, {}, {})
    'not measured'
    """
    other = by_id.get(rung.get(rec["id"], ""))
    if other is None:
        return "not measured"
    if not (is_stable(rec) and is_stable(other)):
        return f"unstable (`{other['id']}`: {verdict_label(other)})"
    word = ("agrees" if other["verdict"] == rec["verdict"] else
            "undecided" if other["verdict"] == "inconclusive" else "differs")
    one = sum(other.get("stability", {}).get("counts", {}).values()) == 1
    return f"{word} (`{other['id']}`: {other['verdict']}{', 1 master seed' if one else ''})"


def both_rungs(topic: str, by_id: dict, rung: dict) -> str:
    """Whether the answer to a "does ALLoRA fix it?" topic holds at the transformer rung too."""
    cells = []
    for cid in FIX_EVIDENCE[topic]:
        if cid in by_id:
            cells.append(transfer_cell(by_id[cid], by_id, rung))
    if cells and all(c.startswith("agrees") for c in cells):
        return "It holds on both rungs (the transformer agrees: " + "; ".join(cells) + ")."
    if any(c.startswith("differs") for c in cells):
        return "It does not hold at the transformer rung (" + "; ".join(cells) + ")."
    return "The transformer rung does not settle it (" + ("; ".join(cells) or "not measured") + ")."


# ---------------------------------------------------------------------------------- measured numbers
def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return str(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) or v is None


def _is_md_table(key: str, v) -> bool:
    if not isinstance(v, str):
        return False
    lines = v.strip().splitlines()
    return (key.endswith("table_md") or key.endswith("_md")) or (
        len(lines) >= 2 and lines[0].lstrip().startswith("|") and set(lines[1].replace(" ", "")) <= set("|-:"))


MAX_COLUMNS = 12


def _is_leaf(v) -> bool:
    return _is_number(v) or isinstance(v, bool) or (isinstance(v, str) and "\n" not in v and len(v) < 60) or (
        isinstance(v, (list, tuple)) and all(_is_number(x) for x in v))


def _cell(v) -> str:
    if isinstance(v, (list, tuple)):
        nums = [x for x in v if x is not None]
        if len(v) <= 4:
            return "[" + ", ".join(_fmt(x) for x in v) + "]"
        return f"{len(v)} values, {_fmt(min(nums))} … {_fmt(max(nums))}, last {_fmt(v[-1])}" if nums else \
            f"{len(v)} values"
    return _fmt(v)


MAX_ROWS = 40


def _as_rows(v):
    """A list of dicts as ``{"[i]": dict}`` (so it can become a table), anything else unchanged."""
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
        return {f"[{i}]": x for i, x in enumerate(v)}
    return v


def _pivotable(d) -> bool:
    """A dict of at least two dicts with the same few keys and plain values: one table row per entry."""
    d = _as_rows(d)
    if not isinstance(d, dict) or len(d) < 2 or not all(isinstance(v, dict) and v for v in d.values()):
        return False
    keys = list(next(iter(d.values())))
    return len(keys) <= MAX_COLUMNS and all(list(v) == keys and all(_is_leaf(x) for x in v.values())
                                            for v in d.values())


def pivot_md(d: dict) -> str:
    """``{row: {column: value}}`` (or a list of like dicts) as a Markdown table of at most MAX_ROWS rows."""
    d = _as_rows(d)
    cols = list(next(iter(d.values())))
    lines = ["| | " + " | ".join(f"`{c}`" for c in cols) + " |", "|---|" + "---|" * len(cols)]
    items = list(d.items())
    lines += [f"| `{r}` | " + " | ".join(_cell(v[c]) for c in cols) + " |" for r, v in items[:MAX_ROWS]]
    if len(items) > MAX_ROWS:
        lines.append(f"| … {len(items) - MAX_ROWS} more rows in the JSON record |" + " |" * len(cols))
    return "\n".join(lines)


def flatten(m, prefix: str = "") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split measurements into ``(tables, scalars)``: Markdown tables (strings found in the measurements,
    shown as is, and dicts of like dicts, one row per entry) and ``(path, readable value)`` rows; long
    numeric lists are summarized by length, min, max and last."""
    tables, pivots, scalars = [], [], []

    def walk(v, path):
        if _pivotable(v):
            pivots.append((path or "measurements", pivot_md(v)))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else str(k))
        elif isinstance(v, (list, tuple)):
            if not v:
                scalars.append((path, "[]"))
            elif all(_is_number(x) for x in v):
                if len(v) <= 6:
                    scalars.append((path, "[" + ", ".join(_fmt(x) for x in v) + "]"))
                else:
                    nums = [x for x in v if x is not None]
                    desc = f"{len(v)} values"
                    if nums:
                        desc += f", min {_fmt(min(nums))}, max {_fmt(max(nums))}, last {_fmt(v[-1])}"
                    scalars.append((path, desc))
            elif all(isinstance(x, str) for x in v) and len(v) <= 8:
                scalars.append((path, ", ".join(_fmt(x) for x in v)))
            elif len(v) <= 12:
                for i, x in enumerate(v):
                    walk(x, f"{path}[{i}]")
            else:
                scalars.append((path, f"{len(v)} entries"))
        elif _is_md_table(path, v):
            tables.append((path, v.strip()))
        else:
            scalars.append((path, _fmt(v)))

    walk(m, prefix)
    return tables + pivots, scalars


def measured_md(measurements) -> list[str]:
    """Markdown lines showing the measurements: tables as is, then a two-column table of numbers."""
    tables, scalars = flatten(measurements)
    out = []
    for path, table in tables:
        out += [f"*{path}*", "", table, ""]

    def rows(items):
        return ["| measured | value |", "|---|---|"] + [f"| `{p}` | {v} |" for p, v in items] + [""]

    if scalars:
        out += rows(scalars[:SCALAR_ROWS])
        if len(scalars) > SCALAR_ROWS:
            out += [f"<details><summary>{len(scalars) - SCALAR_ROWS} more measured values</summary>", ""]
            out += rows(scalars[SCALAR_ROWS:]) + ["</details>", ""]
    return out


# ------------------------------------------------------------------------------------------- REPORT.md
def _provenance(records: list[dict], fast: bool, seeds, timing: dict | None) -> list[str]:
    v = records[0]["versions"] if records else {}
    bits = [f"mode: {'`--fast` (a smoke test, not the record)' if fast else 'full'}",
            f"master seeds: {', '.join(map(str, seeds))}"]
    if v:
        bits += [f"code: `{v.get('code')}`", f"jax {v.get('jax')} ({v.get('backend')}, "
                 f"x64 {'on' if v.get('x64') else 'off'})"]
    if timing:
        bits.append(f"wall time {timing['seconds']:.1f} s ({len(timing.get('ran', []))} claims run, "
                    f"{len(timing.get('cached', []))} cached)")
    unstable = [r["id"] for r in records if not is_stable(r)]
    out = ["Run: " + "; ".join(bits) + ".", ""]
    if len(seeds) > 1:
        out += [f"Stability: {len(records) - len(unstable)} of {len(records)} verdicts are the same at every "
                f"master seed" + (f"; unstable: {', '.join(f'`{u}`' for u in unstable)}." if unstable else "."), ""]
    return out


def render(records: list[dict], *, fast: bool, seeds=(0,), registered=None, failed: dict | None = None,
           timing: dict | None = None) -> str:
    """The full REPORT.md text for ``records`` (one per claim, in registry order)."""
    failed = failed or {}
    registered = tuple(r["id"] for r in records) + tuple(failed) if registered is None else tuple(registered)
    out = ["# toyllora REPORT", "",
           "The ledger of every registered claim of the ALLoRA paper (arXiv 2410.09692), its reviews and "
           "toyllora's extensions, measured on toy models by `toyllora reproduce`"
           + (" --fast: a smoke test with smaller grids and one master seed, never the record" if fast else "")
           + ". Each verdict is computed from the measurements by the rule stated before the run, once per "
             "master seed, and labelled stable when every seed agrees.", ""]
    out += _provenance(records, fast, seeds, timing)
    out += ["## Summary", "", summary_table(records, failed)]
    out += ["## Does ALLoRA fix it?", "",
            "Computed from the stable verdicts of the claims cited (Yes: all supported; No: all not supported; "
            "Undecided: all inconclusive; Partly: a mix; Not answered: a cited verdict is missing or unstable).",
            ""]
    for topic, text in fix_answers(records, registered).items():
        out.append(f"- **{FLAW_TITLES[topic]}**: {text}")
    out.append("")
    if failed:
        out += ["## Failed runs", ""]
        for cid, f in failed.items():
            out += [f"- `{cid}`: {f['error']}"]
            if f.get("traceback"):
                out += ["", "  <details><summary>traceback</summary>", "", "  ```"]
                out += ["  " + ln for ln in f["traceback"].rstrip().splitlines()[-25:]] + ["  ```", "  </details>"]
        out.append("")
    by_id, rung = {r["id"]: r for r in records}, transfer_map(records)
    out += ["## Every claim", "", ledger_rows(records), ""]
    for flaw in FLAWS:
        sel = [r for r in records if r["flaw"] == flaw]
        if not sel:
            continue
        out += [f"## {FLAW_TITLES[flaw]}", ""]
        for r in sel:
            out += claim_md(r, by_id, rung)
    return "\n".join(out).rstrip("\n") + "\n"


def claim_md(r: dict, by_id: dict | None = None, rung: dict | None = None) -> list[str]:
    """The REPORT.md section of one claim record (``by_id``/``rung``: to compare with the transformer rung)."""
    out = [f"### `{r['id']}` — {verdict_label(r)}", "",
           f"**Statement.** {r['statement']}", "",
           f"**Source:** {r['source']} · **Verdict:** **{verdict_label(r)}** · ran in {r['seconds']:.1f} s", ""]
    if rung and r["id"] in rung:
        out += [f"**At the transformer rung:** {transfer_cell(r, by_id or {}, rung)}", ""]
    if r.get("counterparts"):
        out += ["**Toy counterparts:** " + ", ".join(f"`{c}`" for c in r["counterparts"]), ""]
    by_seed = r.get("verdicts_by_seed", {})
    if len(by_seed) > 1:
        out += ["**Verdict by master seed:** " + ", ".join(f"{s}: {v}" for s, v in by_seed.items()), ""]
    out += [f"**Rule (written before the run).** {r['rule']}", "", "**Measured** (master seed "
            f"{next(iter(by_seed), '0')}).", ""]
    out += measured_md(r["measurements"])
    for fig in r["figures"]:
        out += [f"![{r['id']}]({fig})", ""]
    return out


def load_records(out_dir: Path, ids) -> list[dict]:
    return [json.loads((Path(out_dir) / f"{i}.json").read_text()) for i in ids]


# ------------------------------------------------------------------------------------- README ledger
LEDGER_BEGIN, LEDGER_END = "<!-- section:ledger -->", "<!-- /section:ledger -->"
FIGURES_BEGIN, FIGURES_END = "<!-- section:figures -->", "<!-- /section:figures -->"
LEDGER_ROW = re.compile(r"^\| `([a-z0-9]+(?:\.[a-z0-9-]+)+)` \| [^|]* \| [^|]* \| \*\*([a-z ]+)\*\* \|")


def currency_text(records: list[dict], stale) -> str:
    """The ledger header's word on whether its records are what the code produces now: with ``stale`` (the
    ids whose cache key or environment no longer matches, :func:`toyllora.harness.docs.stale_ids`) it
    names them; without it, the package versions the records came from.

    >>> currency_text([{"id": "a.b", "versions": {"code": "c1"}}], stale=[])
    'all 1 records current for this code: their cache keys match'
    >>> currency_text([{"id": "a.b", "versions": {"code": "c1"}}], stale=["a.b"])
    '**1 of 1 records stale** (run under older code or setup: `a.b`): rerun `toyllora reproduce`'
    """
    if stale is None:
        code = sorted({str(r["versions"].get("code")) for r in records})
        return f"code `{code[0]}`" if len(code) == 1 else (
            f"records from {len(code)} versions of the code: regenerate from one run" if code else "no records")
    if not stale:
        return f"all {len(records)} records current for this code: their cache keys match"
    return (f"**{len(stale)} of {len(records)} records stale** (run under older code or setup: "
            f"{', '.join(f'`{i}`' for i in stale)}): rerun `toyllora reproduce`")


def readme_ledger(records: list[dict], registered=None, stale=None) -> str:
    """The README's ledger section: summary counts, the ALLoRA answers and one row per claim with its
    stability. Fast (smoke-test) records are refused: the ledger is the record. ``stale``: the ids of records
    that are no longer current (see :func:`currency_text`); their rows say so."""
    registered = tuple(r["id"] for r in records) if registered is None else tuple(registered)
    fast = [r["id"] for r in records if r.get("mode") == "fast"]
    if fast:
        raise ValueError(f"results: {len(fast)} records are from a --fast run (a smoke test, e.g. {fast[0]}); "
                         "the README ledger takes a full `toyllora reproduce` only")
    seeds = sorted({tuple(r.get("master_seeds", ())) for r in records})
    code_text = currency_text(records, stale)
    seed_text = "; ".join(", ".join(map(str, s)) for s in seeds) or "—"
    n_stable = sum(is_stable(r) for r in records)
    out = ["## The ledger", "",
           f"Generated by `toyllora docs` from a full `toyllora reproduce` run (master seeds {seed_text}; "
           f"{code_text}). {n_stable} of {len(records)} verdicts are **stable** (the same at every master seed); "
           "the others are marked **unstable** with their counts. The full ledger, with every rule and measured "
           "number, is `results/REPORT.md`. `tests/test_readme.py` fails if a registered claim is missing here "
           "or an unknown one appears.", "",
           summary_table(records), "**Does ALLoRA fix it?** (computed from the stable verdicts of the cited "
           "claims)", ""]
    for topic, text in fix_answers(records, registered).items():
        out.append(f"- *{FLAW_TITLES[topic]}*: {text}")
    out += ["", ledger_rows(records, stale)]
    return "\n".join(out) + "\n"


def ledger_rows(records: list[dict], stale=None) -> str:
    """One table row per claim: id, flaw, source, verdict, stability (and whether the record is stale) and
    the transformer rung."""
    by_id, rung, stale = {r["id"]: r for r in records}, transfer_map(records), set(stale or ())
    out = ["| claim | flaw | source | verdict | stability | transformer rung |", "|---|---|---|---|---|---|"]
    out += [f"| `{r['id']}` | {r['flaw']} | {r['source']} | **{r['verdict']}** | "
            f"{verdict_label(r)[len(r['verdict']) + 2:-1] if r.get('stability') else '—'}"
            f"{'; **stale record**' if r['id'] in stale else ''} | "
            f"{'—' if r.get('counterparts') else transfer_cell(r, by_id, rung)} |" for r in records]
    return "\n".join(out)


def parse_ledger(section: str) -> list[tuple[str, str]]:
    """``(claim id, verdict)`` for each claim row of a ledger section."""
    return [(m.group(1), m.group(2)) for m in map(LEDGER_ROW.match, section.splitlines()) if m]


def get_section(text: str, begin: str, end: str) -> str | None:
    """The text between ``begin`` and ``end`` markers, or None if either is missing."""
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return None
    return text[i + len(begin):j]


def set_section(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with the part between the markers replaced by ``body`` (``end`` added after ``begin`` if
    missing). Raises ValueError when ``begin`` is missing."""
    i = text.find(begin)
    if i < 0:
        raise ValueError(f"readme: marker {begin!r} not found; add it where the section belongs")
    j = text.find(end, i)
    tail = text[j:] if j >= 0 else end + text[i + len(begin):]
    return text[:i + len(begin)] + "\n" + body.strip("\n") + "\n" + tail


def readme_figures(img_dir: Path, figures_dir: Path, names) -> str:
    """The README's key-figures section: each ``img_dir/<name>.png`` whose script is listed, with the
    first line of the script's docstring as its caption and the command that redraws it."""
    import ast

    out = ["## Key figures", "",
           "Each is drawn from its claim's record: `toyllora figures --only ID --out figures/img` (from the "
           "full run's record in `results/`, running the claim first if there is none), or "
           "`python figures/<id>.py`. There is one figure script per claim in `figures/`.", ""]
    for name in names:
        png = Path(img_dir) / f"{name}.png"
        if not png.exists():
            continue
        doc = ast.get_docstring(ast.parse((Path(figures_dir) / f"{name}.py").read_text())) or name
        caption = " ".join(doc.strip().split("\n\n")[0].split())  # the first paragraph
        rel = png.relative_to(Path(figures_dir).parent).as_posix()
        out += [f"**{caption}** (`figures/{name}.py`)", "", f"![{name}]({rel})", ""]
    return "\n".join(out)


# -------------------------------------------------------------------------------------- proofs index
PROOF_CLAIM = re.compile(r"^Claims?:\s*(.+?)\s*$", re.M)
CHECKED_BY = re.compile(r"^Checked by:\s*(.+?)\s*$", re.M)


def proof_info(path: Path) -> dict:
    """Title, claim ids and tests named by one derivation in ``proofs/``."""
    text = Path(path).read_text()
    title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), Path(path).stem)
    claims = [c.strip().strip("`") for m in PROOF_CLAIM.findall(text) for c in m.split(",") if c.strip()]
    tests = [t.strip().strip("`") for m in CHECKED_BY.findall(text) for t in m.split(",") if t.strip()]
    return {"file": Path(path).name, "title": title, "claims": claims, "tests": list(dict.fromkeys(tests))}


def proofs_index(proofs_dir: Path) -> str:
    """The text of ``proofs/README.md``: one row per derivation with its claim(s) and checking tests."""
    files = sorted(p for p in Path(proofs_dir).glob("*.md") if p.name != "README.md")
    out = ["# Derivations", "",
           "One Markdown file per derivation. Each starts with `Claim: <claim id>` and every step ends with a "
           "line `Checked by: tests/<file>.py::<test>` naming the tests that check it against autodiff or "
           "Monte Carlo. `tests/test_proofs.py` fails if a named test does not exist, if a claim id is not "
           "registered, or if a derivation is missing from this index. Regenerate this index with "
           "`toyllora docs`.", "",
           "| derivation | claim | checked by |", "|---|---|---|"]
    for p in files:
        info = proof_info(p)
        claims = ", ".join(f"`{c}`" for c in info["claims"]) or "—"
        files_used = sorted({t.split("::")[0] for t in info["tests"]})
        n = len(info["tests"])
        where = ", ".join(f"[`{f}`](../{f})" for f in files_used)
        out.append(f"| [{info['title']}]({info['file']}) | {claims} | "
                   f"{f'{n} test' + ('s' if n != 1 else '') + ' in ' + where if n else '—'} |")
    return "\n".join(out) + "\n"
