"""``toyllora figures``: run the scripts in ``figures/`` from an explicit list.

Each script has ``main(out_dir, seed=0, fast=False)`` that writes ``<name>.png``, ``<name>.pdf`` and a
``<name>.json`` sidecar (plotted data, config, versions) through :func:`save_with_data`.
A test fails if a script in the folder is missing from :data:`FIGURES`. ``figures/img/`` holds the README's
key figures, drawn by ``toyllora figures --only NAME --out figures/img`` (the README section is then
rewritten by ``toyllora docs``).

Example::

    toyllora figures --fast --only zeroinit_gradient_asymmetry --out /tmp/figs
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
    # issue 5: zero init
    "zeroinit_hessian_spectrum",
    "zeroinit_escape_curves",
    "zeroinit_norm_spread",
    "zeroinit_dropout_escape",
    "zeroinit_balance",
    # issue 7: head to head
    "allora_escape_speed",
    "allora_adam_cancellation",
    # issue 6: ripple
    "ripple_bound_growth",
    "ripple_normalization",
    "ripple_coupling",
    "ripple_performance",
    "ripple_input_gradient",
    # issue 4: dropout
    "dropout_output_ols",
    "dropout_input_ridge",
    "dropout_bottleneck_expectation",
    "dropout_concentration",
    "dropout_iterates",
    "dropout_gradient_tails",
    "dropout_expected_vs_sampled",
    "dropout_short_vs_long",
    "dropout_allora_fix",
)

FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"


def save_with_data(fig, out_dir, name: str, data: dict, config: dict) -> dict:
    """Write ``name.png``, ``name.pdf`` and the JSON sidecar ``name.json``; returns the paths."""
    out_dir = Path(out_dir)
    io.save_figure(fig, out_dir / name)
    io.write_json(out_dir / f"{name}.json", {"figure": name, "data": data, "config": config,
                                             "versions": io.versions()})
    return {ext: str(out_dir / f"{name}.{ext}") for ext in ("png", "pdf", "json")}


def check_name(name: str) -> str:
    """``name`` if it is a listed figure script; else ValueError naming the allowed values."""
    if name not in FIGURES or not (FIGURES_DIR / f"{name}.py").exists():
        raise ValueError(f"only: unknown figure {name!r}; allowed: {', '.join(FIGURES)}")
    return name


def load_script(name: str):
    """Import ``figures/<name>.py`` as a module (the scripts are files, not a package)."""
    path = FIGURES_DIR / f"{check_name(name)}.py"
    spec = importlib.util.spec_from_file_location(f"toyllora_figure_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_all(out_dir, *, seed=0, fast=False, only=None, progress=None) -> dict:
    """Run every script in :data:`FIGURES` (or ``only`` that one) into ``out_dir``; returns name -> paths.

    ``progress``: True shows a bar, False hides it, None shows it on a terminal only.
    """
    from tqdm.auto import tqdm

    names = [check_name(only)] if only is not None else list(FIGURES)
    done = {}
    for name in tqdm(names, desc="figures", disable=None if progress is None else not progress):
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
