"""``toyllora docs``: regenerate the generated parts of the documentation from the code and a run.

* the README's ledger section (between ``<!-- section:ledger -->`` and ``<!-- /section:ledger -->``) from the
  JSON records of a ``toyllora reproduce`` run, one row per registered claim;
* the README's key-figures section from the PNGs committed in ``figures/img/``;
* ``proofs/README.md``, the index of the derivations in ``proofs/``;
* the figure scripts ``figures/<id>.py`` (one per claim, generated from the claim).

Example::

    toyllora reproduce --fast --out results && toyllora docs --results results
"""

from __future__ import annotations

from pathlib import Path

from toyllora import claims as claims_pkg
from toyllora.harness import figures, io, registry, report

ROOT = Path(__file__).resolve().parents[2]


def ledger_records(results) -> list[dict]:
    """The records of every registered claim in ``results`` (registry order); ValueError if one is missing."""
    results = Path(results)
    ids = list(registry.all_claims())
    missing = [i for i in ids if not (results / f"{i}.json").exists()]
    if missing:
        raise ValueError(f"results: no record for {', '.join(missing)} in {str(results)!r}; "
                         "run `toyllora reproduce --out DIR` first")
    return report.load_records(results, ids)


def stale_ids(results, records: list[dict]) -> list[str]:
    """The ids of the full records that this code and environment would not reuse: their cache key (the
    claim's code, the science it imports, its setup, the seeds) or their environment no longer matches
    (:func:`toyllora.harness.reproduce.current_record`, as ``reproduce`` decides what to rerun)."""
    from toyllora.harness import reproduce

    env = io.versions()
    return [r["id"] for r in records if r.get("mode") != "fast" and reproduce.current_record(
        Path(results), r["id"], r.get("master_seeds", (0,)), fast=False, env=env) is None]


def write_docs(results="results", *, readme=None, proofs=None, allow_stale: bool = False) -> list[Path]:
    """Rewrite the README sections and the proofs index; returns the files written.

    A record the current code would rerun (:func:`stale_ids`) is refused with a ValueError naming it, unless
    ``allow_stale``: then its row and the ledger's header say it is stale."""
    readme = ROOT / "README.md" if readme is None else Path(readme)
    proofs = ROOT / "proofs" if proofs is None else Path(proofs)
    records = ledger_records(results)  # validate before writing anything
    stale = stale_ids(results, records)
    if stale and not allow_stale:
        raise ValueError(f"results: {len(stale)} records are stale for this code (e.g. {stale[0]}: its code, "
                         "setup or environment changed since it ran); rerun `toyllora reproduce --out "
                         f"{results}` or pass --allow-stale to write the ledger with them marked")
    if not readme.exists():
        raise ValueError(f"readme: {str(readme)!r} does not exist")
    text = readme.read_text()
    text = report.set_section(text, report.LEDGER_BEGIN, report.LEDGER_END,
                              report.readme_ledger(records, registered=registry.all_claims(), stale=stale))
    text = report.set_section(text, report.FIGURES_BEGIN, report.FIGURES_END,
                              report.readme_figures(figures.FIGURES_DIR / "img", figures.FIGURES_DIR,
                                                    [claims_pkg.file_stem(c) for c in registry.all_claims()]))
    io.atomic_write_text(readme, text)
    written = [readme] + figures.write_scripts()
    if proofs.is_dir():
        io.atomic_write_text(proofs / "README.md", report.proofs_index(proofs))
        written.append(proofs / "README.md")
    return written
