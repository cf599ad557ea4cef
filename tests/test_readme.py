"""The README cannot drift: its ledger lists exactly the registered claims with valid verdicts, its key
figures exist, its links resolve, its two commands are the ones CI runs, and the top level stays small."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from toyllora import claims as claims_pkg
from toyllora.claims import VERDICTS
from toyllora.harness import registry, report

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TOP_LEVEL = {"toyllora", "proofs", "figures", "tests", "notebooks", "pyproject.toml", "README.md", ".ci"}
IGNORED_TOP = re.compile(r"^(\..*|results|build|dist|.*\.egg-info|bench.*\.json|__pycache__)$")


@pytest.fixture(scope="module")
def text():
    return README.read_text()


def test_ledger_lists_exactly_the_registered_claims(text):
    section = report.get_section(text, report.LEDGER_BEGIN, report.LEDGER_END)
    assert section is not None, "ledger markers missing from README.md"
    rows = report.parse_ledger(section)
    ids = [cid for cid, _ in rows]
    claims = registry.all_claims()
    hint = "regenerate with `toyllora reproduce && toyllora docs` (the full run: fast records are refused)"
    assert len(ids) == len(set(ids)), f"a claim is listed twice; {hint}"
    assert set(ids) == set(claims), (f"missing: {sorted(set(claims) - set(ids))}, "
                                     f"unknown: {sorted(set(ids) - set(claims))}; {hint}")
    assert all(v in VERDICTS for _, v in rows), rows
    total = re.search(r"^\| \*\*all\*\* \|.* \| (\d+) \|$", section, re.M)
    assert total and int(total.group(1)) == len(claims), "summary counts out of date"


def test_ledger_round_trip():
    recs = [{"id": f"{f}.c-{i}", "flaw": f, "source": "paper", "verdict": v, "mode": "full",
             "master_seeds": [0, 1], "stability": {"label": "stable", "counts": {v: 2}},
             "versions": {"code": "abc"}} for i, (f, v) in enumerate(zip(claims_pkg.FLAWS, VERDICTS))]
    body = report.readme_ledger(recs)
    assert report.parse_ledger(body) == [(r["id"], r["verdict"]) for r in recs]
    new = report.set_section("a\n" + report.LEDGER_BEGIN + "\nold\n" + report.LEDGER_END + "\nb\n",
                             report.LEDGER_BEGIN, report.LEDGER_END, body)
    assert "old" not in new and new.startswith("a\n") and new.endswith(report.LEDGER_END + "\nb\n")
    assert report.parse_ledger(report.get_section(new, report.LEDGER_BEGIN, report.LEDGER_END)) == \
        report.parse_ledger(body)
    with pytest.raises(ValueError, match="^readme: marker"):
        report.set_section("no markers", report.LEDGER_BEGIN, report.LEDGER_END, body)


def test_key_figures_exist_and_are_listed_scripts(text):
    section = report.get_section(text, report.FIGURES_BEGIN, report.FIGURES_END)
    assert section is not None, "figure markers missing from README.md"
    images = re.findall(r"!\[[^\]]*\]\((figures/img/([a-z0-9_]+)\.png)\)", section)
    stems = {claims_pkg.file_stem(c) for c in registry.all_claims()}
    assert 3 <= len(images) <= 5, "three to five key figures (about one per flaw, and the transfer rung)"
    for path, name in images:
        assert (ROOT / path).is_file() and name in stems, path


def test_relative_links_resolve(text):
    for link in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
        if "://" not in link:
            assert (ROOT / link).exists(), link


def test_the_two_commands_are_the_ones_ci_runs(text):
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert "pip install -e . && toyllora reproduce" in block
    assert 'pip install -e ".[test]" && pytest' in block
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && pytest\n' in ci and 'JAX_ENABLE_X64=1 pytest -m "not one_dtype"\n' in ci


def test_top_level_stays_small():
    extra = {p.name for p in ROOT.iterdir() if not IGNORED_TOP.match(p.name)} - TOP_LEVEL
    assert not extra, f"unexpected top-level entries: {sorted(extra)}"


def test_ledger_refuses_fast_records_and_shows_stability():
    rec = {"id": "dropout.c-1", "flaw": "dropout", "source": "paper", "verdict": "supported", "mode": "full",
           "master_seeds": [0, 1, 2], "versions": {"code": "abc"},
           "stability": {"label": "unstable", "counts": {"supported": 2, "not supported": 1}}}
    body = report.readme_ledger([rec])
    assert "unstable: 2 supported, 1 not supported" in body and "0 of 1 verdicts are **stable**" in body
    with pytest.raises(ValueError, match="^results: .*--fast"):
        report.readme_ledger([{**rec, "mode": "fast"}])


def library_modules() -> set[str]:
    """Every module of the package (claim files aside: ``toyllora.claims`` stands for them)."""
    pkg = ROOT / "toyllora"
    out = set()
    for p in pkg.rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) >= 3 and parts[1] == "claims":
            continue
        if parts[-1].startswith("_") and parts[-1] != "__init__":
            continue
        out.add(".".join(parts))
    return out


def test_library_table_lists_every_module(text):
    section = text[text.index("## The library"):]
    section = section[:section.index("\n## ", 3)]
    listed = set(re.findall(r"`(toyllora(?:\.[a-z_0-9]+)*)`", section))
    missing = library_modules() - listed
    assert not missing, f"modules missing from the README's library table: {sorted(missing)}"
    unknown = {m for m in listed if m not in library_modules()}
    assert not unknown, f"the library table names modules that do not exist: {sorted(unknown)}"


def test_ledger_marks_stale_records_in_the_header_and_the_row():
    recs = [{"id": f"dropout.c-{i}", "flaw": "dropout", "source": "paper", "verdict": "supported", "mode": "full",
             "master_seeds": [0, 1], "stability": {"label": "stable", "counts": {"supported": 2}},
             "versions": {"code": f"v{i}"}} for i in range(3)]
    body = report.readme_ledger(recs, stale=["dropout.c-1"])
    assert "**1 of 3 records stale** (run under older code or setup: `dropout.c-1`)" in body
    rows = {cid: line for line in body.splitlines() if (m := report.LEDGER_ROW.match(line)) for cid in [m.group(1)]}
    assert "stale record" in rows["dropout.c-1"] and "stale" not in rows["dropout.c-0"] + rows["dropout.c-2"]
    assert report.parse_ledger(body) == [(r["id"], "supported") for r in recs]
    assert "all 3 records current for this code" in report.readme_ledger(recs, stale=[])
    assert "records from 3 versions of the code" in report.readme_ledger(recs)   # no currency check asked


def test_docs_refuse_records_the_current_code_would_rerun(fast_run, tmp_path):
    """Records whose cache key no longer matches (here: fast records relabelled full) are refused by name,
    before anything is written."""
    import json

    from toyllora.harness import docs

    ids = registry.all_claims()
    if not all((fast_run["out"] / f"{cid}.json").exists() for cid in ids):
        pytest.skip("the session's fast run covers only some claims (TOYLLORA_ONLY)")
    results = tmp_path / "results"
    results.mkdir()
    for cid in ids:
        rec = json.loads((fast_run["out"] / f"{cid}.json").read_text())
        (results / f"{cid}.json").write_text(json.dumps(dict(rec, mode="full")))
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{report.LEDGER_BEGIN}\nold\n{report.LEDGER_END}\n")
    assert docs.stale_ids(results, report.load_records(results, ids)) == list(ids)
    with pytest.raises(ValueError, match=r"^results: \d+ records are stale for this code .*--allow-stale"):
        docs.write_docs(results, readme=readme, proofs=tmp_path / "no-proofs")
    assert readme.read_text() == f"x\n{report.LEDGER_BEGIN}\nold\n{report.LEDGER_END}\n"
