"""Every teaching notebook (``notebooks/*.py``, jupytext py:percent) runs end to end with
``TOYLLORA_FAST=1``, under a timeout, and plots inline.

The kernel is this interpreter, through a kernelspec installed for the test in a temporary folder (so a
fresh virtual environment needs nothing beyond ``pip install -e ".[test]"`` and no user folder is touched).
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.py"))
CELL_TIMEOUT_S = 300  # per cell; the whole fast run of a notebook is meant to take ~30 s
KERNEL = "toyllora-test"
# execution-bound notebooks (long scans): their kernel compiles with XLA's optimizations, the others with most
# of them off as the rest of the suite (tests/conftest.py)
XLA_OPTIMIZED = {"03_zero_init"}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec for ``sys.executable`` in a temporary Jupyter data folder; yields its name."""
    pytest.importorskip("nbclient")
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name=KERNEL, prefix=str(prefix))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        mp.setenv("TOYLLORA_FAST", "1")
        mp.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        yield KERNEL


def test_notebooks_exist():
    assert any(p.name.startswith("01_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end(path, kernel, tmp_path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    if path.stem in XLA_OPTIMIZED:
        monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")

    text = path.read_text()
    assert text.lstrip().startswith(("# ---", "# %%")), "a jupytext py:percent file"
    nb = jupytext.reads(text, fmt="py:percent")
    kinds = [c.cell_type for c in nb.cells]
    assert "markdown" in kinds and "code" in kinds, "a notebook explains (markdown) and computes (code)"
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel, allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell and its traceback
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "plots inline"
    assert not list(Path(path).parent.glob("*.ipynb")), "notebooks are kept as .py files only"
