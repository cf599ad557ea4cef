"""Figure scripts: the explicit list matches the folder, each script documents itself, and each runs with
``fast=True`` writing a PNG, a PDF and a JSON sidecar (plotted data, config, versions)."""

from __future__ import annotations

import ast
import inspect
import json

import pytest

from toyllora import figures
from toyllora.figures import FIGURES, FIGURES_DIR


def _scripts():
    return sorted(p.stem for p in FIGURES_DIR.glob("*.py") if not p.name.startswith("_"))


def test_every_script_in_the_folder_is_listed_and_every_listed_script_exists():
    assert sorted(set(FIGURES)) == _scripts(), "add new scripts to toyllora.figures.FIGURES (and only those)"
    assert len(set(FIGURES)) == len(FIGURES), "a script is listed twice"


def test_only_pngs_and_sidecars_sit_in_the_images_folder():
    """``figures/img/`` holds committed images for the README (not scripts); each belongs to a script."""
    img = FIGURES_DIR / "img"
    if not img.exists():
        pytest.skip("no figures/img folder")
    for p in img.iterdir():
        if p.name.startswith("."):
            continue  # a file being written right now
        assert p.suffix in (".png", ".pdf", ".json") and p.stem in FIGURES, p.name


@pytest.mark.parametrize("name", FIGURES)
def test_script_documents_command_runtime_and_what_it_shows(name):
    tree = ast.parse((FIGURES_DIR / f"{name}.py").read_text())
    doc = ast.get_docstring(tree) or ""
    assert "Command" in doc and name in doc, "docstring must give the command that runs the script"
    assert "Runtime" in doc or "runtime" in doc, "docstring must give the runtime"
    assert len(doc.splitlines()[0]) > 10, "the first docstring line says what the figure shows"
    mains = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main"]
    assert mains, "a script defines main(out_dir, seed=0, fast=False)"
    args = [a.arg for a in mains[0].args.args]
    assert args[:3] == ["out_dir", "seed", "fast"]


@pytest.mark.parametrize("name", FIGURES)
def test_script_smoke_fast(name, tmp_path):
    module = figures.load_script(name)
    params = inspect.signature(module.main).parameters
    assert params["seed"].default == 0 and params["fast"].default is False
    paths = module.main(tmp_path, seed=0, fast=True)
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / f"{name}.{ext}").stat().st_size > 0, ext
    assert {"png", "pdf", "json"} <= set(paths)
    side = json.loads((tmp_path / f"{name}.json").read_text())
    assert {"data", "config", "versions"} <= set(side) and side["data"] and side["config"] is not None
    assert {"jax", "code", "x64"} <= set(side["versions"])
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_unknown_figure_name_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="^only: unknown figure 'nope'; allowed: "):
        figures.run_all(tmp_path, only="nope", progress=False)
    assert not any(tmp_path.iterdir())
