"""``toyllora figures``: draw each claim's figure from its record — the claim runs only when its results
folder has no current record.

Every claim draws one figure, ``plot(record)``, from its JSON record alone. ``figures/`` holds one small
script per claim, named after the id (``zeroinit.hessian`` → ``figures/zeroinit_hessian.py``), so a user can
run ``python figures/zeroinit_hessian.py``; ``tests/test_figures.py`` fails if the folder and the registry
disagree. ``figures/img/`` holds the README's key figures (``toyllora figures --only ID --out figures/img``,
then ``toyllora docs``).

Example::

    toyllora figures --only zeroinit.hessian --fast --out /tmp/figs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from toyllora import claims as claims_pkg
from toyllora.harness import registry, reproduce

FIGURES_DIR = Path(__file__).resolve().parents[2] / "figures"


def script_path(claim_id: str) -> Path:
    """``figures/<id as file stem>.py``, the script that draws a claim's figure."""
    return FIGURES_DIR / f"{claims_pkg.file_stem(claim_id)}.py"


def script_text(claim_id: str) -> str:
    """The text of ``figures/<id>.py``: uniform, generated from the claim (``toyllora docs`` writes it)."""
    c = registry.get(claim_id)
    shows = " ".join((c.plot.__doc__ or "").strip().split("\n\n")[0].split()) or "The claim's figure."
    stem = claims_pkg.file_stem(claim_id)
    return f'''"""{claim_id}: {shows}

Command: ``python figures/{stem}.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only {claim_id}``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``{claim_id}``, in ``toyllora/claims/{claims_pkg.parse_id(claim_id)[0]}/{claims_pkg.parse_id(claim_id)[1]}.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("{claim_id}")
'''


def write_scripts(folder=FIGURES_DIR) -> list[Path]:
    """Write every claim's figure script that is missing or out of date; returns the files written."""
    from toyllora.harness import io

    written = []
    for cid in registry.all_claims():
        path = Path(folder) / f"{claims_pkg.file_stem(cid)}.py"
        text = script_text(cid)
        if not path.exists() or path.read_text() != text:
            io.atomic_write_text(path, text)
            written.append(path)
    return written


def draw(claim_id: str, *, results="results", out_dir=None, fast=False, seeds=None, progress=None) -> dict:
    """Draw one claim's figure from its current record in ``results`` (running the claim first if there is
    none) into ``out_dir`` (default ``results/figures``); returns ``{"png", "pdf", "ran", "seconds"}``."""
    c = registry.get(claim_id)
    seeds = registry.check_seeds(reproduce.default_seeds(fast) if seeds is None else seeds)
    results = reproduce.check_out_dir(results)
    out_dir = reproduce.check_out_dir(Path(results) / "figures" if out_dir is None else out_dir)
    t0 = time.perf_counter()
    rec = reproduce.current_record(results, claim_id, seeds, fast)
    ran = rec is None
    if ran:
        rec = registry.run(claim_id, seeds=seeds, fast=fast, out_dir=results, progress=progress)
    png, pdf = registry.draw(c, rec, out_dir)
    return {"png": str(png), "pdf": str(pdf), "ran": ran, "seconds": round(time.perf_counter() - t0, 2)}


def run_all(*, results="results", out_dir=None, fast=False, seeds=None, only=None, progress=None) -> dict:
    """Draw every claim's figure (or only the claim ``only``); returns ``{id: draw(...)}``."""
    from tqdm.auto import tqdm

    ids = [registry.get(only).id] if only is not None else list(registry.all_claims())
    return {cid: draw(cid, results=results, out_dir=out_dir, fast=fast, seeds=seeds, progress=progress)
            for cid in tqdm(ids, desc="figures", disable=None if progress is None else not progress)}


def _seeds_arg(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0 separated by commas, got {text!r}")


def script_main(claim_id: str, argv=None) -> dict:
    """Entry point of a figure script: ``python figures/<id>.py [--fast] [--seeds 0,1] [--results DIR] [--out DIR]``."""
    p = argparse.ArgumentParser(description=f"Draw the figure of {claim_id} from its record.")
    p.add_argument("--fast", action="store_true", help="the smoke-test record (one master seed)")
    p.add_argument("--seeds", type=_seeds_arg, default=None, help="master seeds (default: 0-4, fast: 0)")
    p.add_argument("--results", type=Path, default=Path("results"), help="folder of the records")
    p.add_argument("--out", type=Path, default=None, help="where the figure goes (default: RESULTS/figures)")
    a = p.parse_args(argv)
    paths = draw(claim_id, results=a.results, out_dir=a.out, fast=a.fast, seeds=a.seeds)
    print(f"{claim_id}: {paths['png']}" + (" (ran the claim first)" if paths["ran"] else " (from its record)"))
    return paths
