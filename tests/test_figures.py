"""Figures: one script per claim in ``figures/`` (the folder and the registry agree, each script is the
generated one), every claim's figure is drawn from its record, and every figure is readable — no two text
elements overlap and no legend covers a data point."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from toyllora import claims as claims_pkg
from toyllora.claims import CLAIMS
from toyllora.harness import figures, registry
from toyllora.harness.figures import FIGURES_DIR
from toyllora.plotting import figure, layout_problems, legend


def test_one_script_per_claim_and_no_other():
    scripts = {p.stem for p in FIGURES_DIR.glob("*.py") if not p.name.startswith("_")}
    expected = {claims_pkg.file_stem(c) for c in CLAIMS}
    assert scripts == expected, {"missing": sorted(expected - scripts), "unknown": sorted(scripts - expected),
                                 "fix": "run `toyllora docs` (it writes the scripts)"}


@pytest.mark.parametrize("claim_id", CLAIMS)
def test_script_is_the_generated_one(claim_id):
    path = figures.script_path(claim_id)
    assert path.read_text() == figures.script_text(claim_id), f"{path.name} is out of date: run `toyllora docs`"


def test_images_folder_holds_only_claim_figures():
    img = FIGURES_DIR / "img"
    stems = {claims_pkg.file_stem(c) for c in CLAIMS}
    for p in img.iterdir() if img.exists() else []:
        if not p.name.startswith("."):
            assert p.suffix in (".png", ".pdf") and p.stem in stems, p.name


@pytest.mark.parametrize("claim_id", CLAIMS)
def test_figure_is_readable(claim_id, fast_run):
    """Titles, axis labels, suptitle and legends do not overlap; no legend covers a plotted point."""
    rec = json.loads((fast_run["out"] / f"{claim_id}.json").read_text())
    fig = registry.get(claim_id).plot(rec)
    try:
        assert layout_problems(fig) == []
    finally:
        plt.close(fig)


def test_layout_check_finds_overlaps_and_covered_points():
    import numpy as np

    fig, ax = figure(1, 2, figsize=(4, 3))
    for a in ax:
        a.set_title("a title long enough to run into its neighbour")
    assert any("title overlaps" in p for p in layout_problems(fig))
    plt.close(fig)
    fig, ax = figure()
    ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50), "o", label="points under the legend")
    ax.legend(loc="upper right")
    assert any("legend covers" in p for p in layout_problems(fig))
    legend(ax)
    assert layout_problems(fig) == []
    plt.close(fig)


def test_figures_command_draws_from_the_record_without_running(fast_run, tmp_path, monkeypatch):
    cid = next(c for c in CLAIMS if (fast_run["out"] / f"{c}.json").exists())
    monkeypatch.setattr(registry, "run", lambda *a, **k: pytest.fail("ran the claim although a record exists"))
    paths = figures.draw(cid, results=fast_run["out"], out_dir=tmp_path, fast=True)
    assert not paths["ran"] and (tmp_path / f"{claims_pkg.file_stem(cid)}.png").read_bytes()[:4] == b"\x89PNG"
    assert (fast_run["out"] / "figures" / f"{claims_pkg.file_stem(cid)}.png").read_bytes() == \
        (tmp_path / f"{claims_pkg.file_stem(cid)}.png").read_bytes()  # the same drawing, byte for byte


def test_unknown_claim_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="^claim: unknown id 'nope.x'"):
        figures.run_all(results=tmp_path, only="nope.x", progress=False)
    assert not any(tmp_path.iterdir())


def test_save_figure_gives_matplotlibs_tight_png(tmp_path):
    """``io.save_figure`` lays the figure out once for both files; its PNG is the one matplotlib's own
    ``bbox_inches="tight"`` save gives, also when a legend sticks out of the canvas."""
    from toyllora.harness import io

    def make():
        fig, ax = figure(ncols=2, figsize=(5, 2.5))
        for a in ax:
            a.plot([0, 1, 2], [1, 0, 2], label="a long legend label that sticks out")
            a.legend(loc="upper left", bbox_to_anchor=(0.6, 1.3))
        ax[0].set_title("left")
        return fig

    png, pdf = io.save_figure(make(), tmp_path / "shared")
    ref = make()
    ref.savefig(tmp_path / "ref.png", dpi=io.FIGURE_DPI, bbox_inches="tight", metadata={"Software": "toyllora"})
    plt.close(ref)
    assert png.read_bytes() == (tmp_path / "ref.png").read_bytes()
    assert pdf.read_bytes()[:5] == b"%PDF-" and not list(tmp_path.glob(".*"))   # no temporary left
