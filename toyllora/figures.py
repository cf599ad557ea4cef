"""``toyllora figures``: run the scripts in ``figures/`` from an explicit list.

Each script has ``main(out_dir, seed=0, fast=False)`` that writes ``<name>.png``, ``<name>.pdf`` and a
``<name>.json`` sidecar (plotted data, config, versions) through :func:`save_with_data`.
A test fails if a script in the folder is missing from :data:`FIGURES`.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from toyllora import io

# The explicit list of figure scripts (file names in figures/ without .py), in the order they run.
FIGURES = (
    # foundation / flaw 2
    "zeroinit_gradient_asymmetry",
)

FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"


def save_with_data(fig, out_dir, name: str, data: dict, config: dict) -> dict:
    """Write ``name.png``, ``name.pdf`` and the JSON sidecar ``name.json``; returns the paths."""
    out_dir = Path(out_dir)
    io.save_figure(fig, out_dir / name)
    io.write_json(out_dir / f"{name}.json", {"figure": name, "data": data, "config": config,
                                             "versions": io.versions()})
    return {ext: str(out_dir / f"{name}.{ext}") for ext in ("png", "pdf", "json")}


def load_script(name: str):
    path = FIGURES_DIR / f"{name}.py"
    if not path.exists():
        raise ValueError(f"only: unknown figure {name!r}; allowed: {FIGURES}")
    spec = importlib.util.spec_from_file_location(f"toyllora_figure_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_all(out_dir, *, seed=0, fast=False, only=None, progress=True) -> dict:
    from tqdm.auto import tqdm

    if only is not None and only not in FIGURES:
        raise ValueError(f"only: unknown figure {only!r}; allowed: {FIGURES}")
    names = [only] if only else list(FIGURES)
    done = {}
    for name in tqdm(names, desc="figures", disable=not progress):
        t0 = time.perf_counter()
        done[name] = load_script(name).main(out_dir, seed=seed, fast=fast)
        done[name]["seconds"] = round(time.perf_counter() - t0, 2)
    return done


def script_main(main) -> None:
    """Command-line entry for a figure script: ``python figures/NAME.py [--fast] [--seed N] [--out DIR]``."""
    p = argparse.ArgumentParser()
    p.add_argument("--fast", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/figures"))
    a = p.parse_args()
    print(main(a.out, seed=a.seed, fast=a.fast))
