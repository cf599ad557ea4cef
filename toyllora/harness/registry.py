"""The claim registry at run time: load a claim file, run it under one or several master seeds, write its
record (JSON) and figure atomically, and decide when a record is current.

A claim is a module (:mod:`toyllora.claims` lists them and states the contract). :func:`run` measures it once
per master seed, computes a verdict per seed from the measurements *as recorded* (JSON round trip), labels
the result ``stable`` when every seed gives the same verdict and ``unstable`` otherwise, and draws the figure
from the record alone.

The record (``<out>/<id>.json``) holds ``id, statement, source, flaw, rule, verdict, measurements, figures,
config, versions, seconds`` (the contract) and ``mode, master_seeds, verdicts_by_seed, stability,
measurements_by_seed, counterparts, cache_key, figure_key`` (``counterparts``: the toy claims a transformer-rung
claim measures again, from its ``COUNTERPARTS``). ``measurements`` are those of the first master seed;
``measurements_by_seed`` holds the others. ``verdict`` is the verdict of most seeds (ties: the first seed's).

Example:
    >>> from toyllora.harness import registry
    >>> c = registry.get("zeroinit.gradient-asymmetry")
    >>> c.source, c.flaw, c.path.name
    ('paper', 'zeroinit', 'gradient_asymmetry.py')
    >>> registry.get("no.such-claim")
    Traceback (most recent call last):
    ...
    ValueError: claim: unknown id 'no.such-claim'; run `toyllora list` for the allowed ids
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Callable

from toyllora import claims as claims_pkg
from toyllora.claims import CLAIMS, FLAWS, SOURCES, VERDICTS
from toyllora.harness import io

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../toyllora
REQUIRED = ("STATEMENT", "SOURCE", "SETUP", "rule", "measure", "verdict", "plot", "VERDICT_EXAMPLES")
FIGURE_ONLY = ("toyllora.plotting",)  # modules that change a figure, never a measurement
# the harness (its bench modules aside, which allora.overhead measures with): editing it invalidates no record
NOT_SCIENCE = tuple(f"toyllora.harness.{m}" for m in ("cli", "docs", "figures", "io", "registry", "report",
                                                      "reproduce", "where")) + ("toyllora.harness",)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A loaded claim file: its id, metadata and the functions of the contract."""

    id: str
    module: ModuleType

    @property
    def statement(self) -> str:
        return self.module.STATEMENT

    @property
    def source(self) -> str:
        return self.module.SOURCE

    @property
    def flaw(self) -> str:
        return getattr(self.module, "FLAW", self.id.split(".")[0])

    @property
    def setup(self):
        return self.module.SETUP

    @property
    def wall_clock(self) -> bool:
        """Whether the claim's statistic is a wall-clock timing (``WALL_CLOCK = True`` in its file): ``reproduce
        --jobs N`` then runs it alone, after the worker processes, so that no other claim shares the cores."""
        return getattr(self.module, "WALL_CLOCK", False) is True

    @property
    def path(self) -> Path:
        return Path(self.module.__file__)

    def rule(self, fast: bool = False) -> str:
        return self.module.rule(self.setup.pick(fast))

    @property
    def measure(self) -> Callable:
        return self.module.measure

    @property
    def verdict(self) -> Callable:
        return self.module.verdict

    @property
    def plot(self) -> Callable:
        return self.module.plot

    @property
    def examples(self) -> list:
        return list(self.module.VERDICT_EXAMPLES)


def _load(claim_id: str) -> Claim:
    module = importlib.import_module(claims_pkg.module_name(claim_id))
    missing = [n for n in REQUIRED if not hasattr(module, n)]
    if missing:
        raise RuntimeError(f"claim {claim_id}: {module.__file__} does not define {', '.join(missing)}")
    c = Claim(claim_id, module)
    if c.source not in SOURCES:
        raise RuntimeError(f"claim {claim_id}: SOURCE {c.source!r} is not one of {SOURCES}")
    if c.flaw not in FLAWS:
        raise RuntimeError(f"claim {claim_id}: FLAW {c.flaw!r} is not one of {FLAWS}")
    if not isinstance(c.setup, claims_pkg.Setup):
        raise RuntimeError(f"claim {claim_id}: SETUP must be a toyllora.claims.Setup")
    return c


@functools.lru_cache(maxsize=None)
def _cached(claim_id: str) -> Claim:
    return _load(claim_id)


def all_claims() -> dict[str, Claim]:
    """Every registered claim (:data:`toyllora.claims.CLAIMS`), in report order."""
    return {cid: _cached(cid) for cid in CLAIMS}


def get(claim_id: str) -> Claim:
    """One registered claim; ValueError naming the allowed ids if it is unknown."""
    if claim_id not in CLAIMS:
        raise ValueError(f"claim: unknown id {claim_id!r}; run `toyllora list` for the allowed ids")
    return _cached(claim_id)


# ---------------------------------------------------------------------------------------- cache keys
def _is_plot_code(node) -> bool:
    """A claim module's figure code: ``plot`` and functions named ``plot_*`` or ``_plot*``."""
    return isinstance(node, ast.FunctionDef) and (node.name == "plot" or node.name.startswith(("plot_", "_plot")))


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _assigns(node, name: str) -> bool:
    """Whether ``node`` is a top-level assignment to ``name``."""
    return isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
        isinstance(t, ast.Name) and t.id == name for t in (node.targets if isinstance(node, ast.Assign)
                                                           else [node.target]))


def _is_registry_list(node) -> bool:
    """``CLAIMS = (...)`` in :mod:`toyllora.claims`: which claims exist, never how one is measured."""
    return _assigns(node, "CLAIMS")


def _strip(tree: ast.Module, *, drop_plots: bool = False, drop_registry: bool = False) -> str:
    """The module's code without docstrings (and, for a claim, without its figure code and its ``SETUP``
    line; for :mod:`toyllora.claims`, without the registry list), as normalized text."""
    body = []
    for node in tree.body:
        if _is_docstring(node) or (drop_registry and _is_registry_list(node)):
            continue
        # a claim's figure code, and its SETUP line: the setup a record ran with is hashed by value
        # (cache_key's setup=...), so shrinking the fast smoke test keeps the full record current
        if drop_plots and (_is_plot_code(node) or _assigns(node, "SETUP")):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and len(sub.body) > 1 \
                    and _is_docstring(sub.body[0]):
                sub.body = sub.body[1:]
        body.append(node)
    return ast.unparse(ast.Module(body=body, type_ignores=[]))


def _module_path(name: str) -> Path | None:
    """The source file of a ``toyllora`` module (None if it is not one)."""
    parts = name.split(".")
    if parts[0] != "toyllora":
        return None
    if len(parts) == 1:
        return PACKAGE_ROOT / "__init__.py"
    rel = Path(*parts[1:])
    for cand in (PACKAGE_ROOT / rel.with_suffix(".py"), PACKAGE_ROOT / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The ``toyllora.*`` modules a module imports (absolute imports; ``from toyllora import x`` → x)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("toyllora")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("toyllora"):
            out.add(node.module)
            for a in node.names:
                if _module_path(f"{node.module}.{a.name}") is not None:
                    out.add(f"{node.module}.{a.name}")
    parts = name.split(".")
    out |= {".".join(parts[:i]) for i in range(2, len(parts))}  # parent packages run their __init__
    return out


def dependencies(module: str) -> list[str]:
    """Every ``toyllora`` module that ``module`` imports, transitively (itself included), harness excluded."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or name in NOT_SCIENCE or _module_path(name) is None:
            continue
        seen.add(name)
        todo.extend(_imports_of_text(name, _module_path(name).read_text()))
    return sorted(seen)


# Keyed by the module's text, so an edited file is parsed again: every claim imports the same ~30 science
# modules, and parsing them once per claim made a cached `reproduce` over 50 records take a minute or more.
@functools.lru_cache(maxsize=None)
def _imports_of_text(name: str, text: str) -> tuple[str, ...]:
    return tuple(sorted(_imports(name, ast.parse(text))))


@functools.lru_cache(maxsize=None)
def _hashed_parts(dep: str, text: str, figure_only: bool) -> tuple[str, str]:
    """(text hashed into the measurement hash, text hashed into the figure hash) of one module."""
    if figure_only:
        return "", dep + _strip(ast.parse(text))
    tree = ast.parse(text)
    claim_code = dep.startswith("toyllora.claims")
    # the plots' text before _strip, which removes the docstrings of the tree's functions in place
    figure = dep + "".join(ast.unparse(n) for n in tree.body if _is_plot_code(n)) if claim_code else ""
    return dep + _strip(tree, drop_plots=claim_code, drop_registry=dep == "toyllora.claims"), figure


@functools.lru_cache(maxsize=None)
def _source_hashes(claim_id: str) -> tuple[str, str]:
    """(measurement hash, figure hash) of a claim's code: the claim file without its plot functions and the
    science modules it imports; then the plot functions and the figure-only modules."""
    name = claims_pkg.module_name(claim_id)
    h_measure, h_figure = hashlib.sha256(), hashlib.sha256()
    for dep in dependencies(name):
        measure, figure = _hashed_parts(dep, _module_path(dep).read_text(), dep in FIGURE_ONLY)
        if measure:
            h_measure.update(measure.encode())
        if figure:
            h_figure.update(figure.encode())
    return h_measure.hexdigest()[:16], h_figure.hexdigest()[:16]


def cache_key(claim_id: str, seeds, fast: bool) -> str:
    """What makes a record current: the claim's code and the science it imports, its setup, the master
    seeds and the mode (the environment is checked separately, :data:`toyllora.harness.reproduce.ENV_FIELDS`)."""
    c = get(claim_id)
    setup = hashlib.sha256(repr(c.setup.pick(fast)).encode()).hexdigest()[:12]
    seeds = ",".join(str(int(s)) for s in seeds)
    return f"{claim_id}|mode={'fast' if fast else 'full'}|seeds={seeds}|code={_source_hashes(claim_id)[0]}|" \
           f"setup={setup}"


def cache_key_parts(key: str) -> dict:
    """The named fields of a :func:`cache_key` (``mode``, ``seeds``, ``code``, ``setup``; missing ones absent).

    >>> cache_key_parts("a.b|mode=full|seeds=0,1|code=c1|setup=s1")["code"]
    'c1'
    """
    return dict(p.split("=", 1) for p in str(key).split("|")[1:] if "=" in p)


def figure_key(claim_id: str) -> str:
    """What makes a record's figure current (its plot code and the shared style)."""
    return _source_hashes(claim_id)[1]


# ------------------------------------------------------------------------------------------- running
def check_seeds(seeds) -> tuple[int, ...]:
    """Master seeds as a non-empty tuple of distinct integers >= 0; ValueError otherwise."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = (seeds,)
    try:
        out = tuple(seeds)
    except TypeError:
        raise ValueError(f"seeds: must be integers >= 0, got {seeds!r}") from None
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ValueError(f"seeds: must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds: must be distinct, got {seeds!r}")
    return out


def stability(verdicts: list[str]) -> dict:
    """``{"label": "stable" | "unstable", "counts": {verdict: n}, "verdict": the verdict of most seeds}``.

    >>> stability(["supported", "supported"])["label"]
    'stable'
    >>> s = stability(["supported", "not supported", "not supported"])
    >>> s["label"], s["verdict"], s["counts"]
    ('unstable', 'not supported', {'not supported': 2, 'supported': 1})
    """
    counts = Counter(verdicts)
    top = max(counts.values())
    modal = next(v for v in verdicts if counts[v] == top)  # ties: the first seed's
    ordered = {v: counts[v] for v in sorted(counts, key=lambda v: (-counts[v], VERDICTS.index(v)))}
    return {"label": "stable" if len(counts) == 1 else "unstable", "counts": ordered, "verdict": modal}


def _as_recorded(obj):
    """The JSON round trip of ``obj``: what a verdict and a plot see."""
    return json.loads(io.dumps(obj))


def measure_all(c: Claim, p, seeds, progress: bool | None = None) -> list[dict]:
    """The claim's measurements for every master seed (the claim's ``measure_many`` when it has one)."""
    from tqdm.auto import tqdm

    if hasattr(c.module, "measure_many"):
        return list(c.module.measure_many(p, list(seeds)))
    bar = tqdm(seeds, desc=c.id, unit="seed", leave=False,
               disable=(len(seeds) < 2) if progress is None else not progress)
    return [c.measure(p, s) for s in bar]


def build_record(c: Claim, seeds, fast: bool, measurements: list[dict], seconds: float) -> dict:
    """The record of a claim from its per-seed measurements (verdicts computed on the recorded form)."""
    recorded = [_as_recorded(m) for m in measurements]
    verdicts = []
    for s, m in zip(seeds, recorded):
        v = c.verdict(m)
        if v not in VERDICTS:
            raise RuntimeError(f"claim {c.id}: verdict() returned {v!r} at seed {s}, not one of {VERDICTS}")
        verdicts.append(v)
    st = stability(verdicts)
    p = c.setup.pick(fast)
    return {"id": c.id, "statement": c.statement, "source": c.source, "flaw": c.flaw, "rule": c.rule(fast),
            "verdict": st["verdict"], "mode": "fast" if fast else "full", "master_seeds": list(seeds),
            "counterparts": list(getattr(c.module, "COUNTERPARTS", ())),
            "verdicts_by_seed": {str(s): v for s, v in zip(seeds, verdicts)},
            "stability": {"label": st["label"], "counts": st["counts"]},
            "measurements": recorded[0],
            "measurements_by_seed": {str(s): m for s, m in zip(seeds[1:], recorded[1:])},
            "figures": [f"figures/{claims_pkg.file_stem(c.id)}.png"],
            "config": {"setup": _as_recorded(dataclasses.asdict(p)), "mode": "fast" if fast else "full",
                       "master_seeds": list(seeds), "setup_class": type(p).__name__},
            "versions": io.versions(), "seconds": round(seconds, 3),
            "cache_key": cache_key(c.id, seeds, fast), "figure_key": figure_key(c.id)}


def draw(c: Claim, record: dict, out_dir: Path) -> list[Path]:
    """Draw ``plot(record)`` into ``out_dir/<id as file stem>.png`` and ``.pdf`` (atomically)."""
    fig = c.plot(_as_recorded(record))
    return io.save_figure(fig, Path(out_dir) / claims_pkg.file_stem(c.id))


RESULTS_ENV = "TOYLLORA_RESULTS"  # the run's output folder, for what claims cache there (see claims/transfer)


FAST_COMPILER_ENV = "TOYLLORA_FAST_OPTIMIZE"   # "1": the fast smoke test compiles with XLA's optimizations too
# Claim folders whose fast runs are execution-bound (long scans even in the smoke test): unoptimized, three of
# them ran 3-8x slower (zeroinit.escape-time 9 s -> 52 s, nonzero-inits 8.5 s -> 69 s, dropout-escape 6.5 s ->
# 28 s, 2 cores). A whole folder, never single claims: claims of a folder share runs cached in-process, and a
# shared run must be computed under one setting whichever claim asks first.
FAST_OPTIMIZED_FOLDERS = frozenset({"zeroinit"})
FAST_SETTING = "most optimizations off (fast smoke test)"
_compiled_under = {"setting": None}   # the setting of the programs in JAX's in-memory caches (None: the
# process's own, read from the flag at the first compiler_for: e.g. the test suite compiles unoptimized)


def fast_compiler_optimizations() -> bool:
    """Whether a fast (smoke-test) run compiles with XLA's optimizations: off unless
    ``TOYLLORA_FAST_OPTIMIZE=1``.

    The fast setups are tiny: their programs compile for seconds and run for milliseconds, so a fast run
    compiles with most of XLA's optimizations off (``jax_disable_most_optimizations``), which roughly halves
    its compile time (``allora.ablation --fast``: 45 s -> 25 s cold on 2 cores). The full run, the record,
    always compiles with them. A fast record says which in its ``compiler`` field.

    >>> fast_compiler_optimizations() in (True, False)
    True
    """
    return os.environ.get(FAST_COMPILER_ENV, "").strip().lower() in ("1", "true", "yes", "on")


COMPILER_FLAG = "jax_disable_most_optimizations"   # JAX's switch for XLA's optimizations (on: most off)


@contextmanager
def xla_optimizations(on: bool):
    """Inside the block, compile with XLA's optimizations (``on``) or with most of them off; the flag is
    restored on exit. JAX's in-memory caches are left alone (see :func:`compiler_for`).

    >>> with xla_optimizations(True):
    ...     pass
    """
    import jax

    before = bool(jax.config.values.get(COMPILER_FLAG, False))
    jax.config.update(COMPILER_FLAG, not on)
    try:
        yield
    finally:
        jax.config.update(COMPILER_FLAG, before)


@contextmanager
def compiler_for(fast: bool, claim_id: str | None = None):
    """Inside a fast run, compile with most XLA optimizations off (unless :func:`fast_compiler_optimizations`,
    or the claim's folder is in :data:`FAST_OPTIMIZED_FOLDERS`); a full run compiles optimized. Yields the
    setting's name and restores the flag on exit.

    The flag is part of the on-disk compile cache's key but not of JAX's in-memory caches, so when a run needs
    the other setting than the programs held in memory, those caches are cleared first
    (``jax.clear_caches``): a record never depends on what the process compiled before it.

    >>> with compiler_for(False) as name:
    ...     name
    'optimized'
    """
    import jax

    folder = None if claim_id is None else claims_pkg.parse_id(claim_id)[0]
    optimized = not fast or fast_compiler_optimizations() or folder in FAST_OPTIMIZED_FOLDERS
    setting = "optimized" if optimized else FAST_SETTING
    if _compiled_under["setting"] is None:
        _compiled_under["setting"] = FAST_SETTING if jax.config.values.get(COMPILER_FLAG, False) else "optimized"
    if _compiled_under["setting"] != setting:
        jax.clear_caches()
        _compiled_under["setting"] = setting
    with xla_optimizations(optimized):
        yield setting


@contextmanager
def results_folder(out_dir: Path | str):
    """Inside the block, ``$TOYLLORA_RESULTS`` names ``out_dir`` (where claims cache what they build once, the
    base transformer); restored on exit."""
    previous = os.environ.get(RESULTS_ENV)
    os.environ[RESULTS_ENV] = str(out_dir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = previous


def measure_seeds(claim_id: str, seeds, fast: bool, out_dir: Path | str = "results",
                  progress: bool | None = None) -> dict:
    """The claim's measurements at ``seeds``, as recorded (JSON round trip), without writing anything:
    ``{"measurements": [one per seed], "seconds", "compiler"}``. ``reproduce --jobs`` measures a claim's
    master seeds in several processes and joins them with :func:`write_record`.

    >>> m = measure_seeds("ripple.bound", [0], fast=True)
    >>> len(m["measurements"]), sorted(m)
    (1, ['compiler', 'measurements', 'seconds'])
    """
    c = get(claim_id)
    seeds = check_seeds(seeds)
    with results_folder(out_dir):
        t0 = time.perf_counter()
        with compiler_for(fast, claim_id) as compiler:
            measurements = measure_all(c, c.setup.pick(fast), seeds, progress)
        return {"measurements": [_as_recorded(m) for m in measurements], "compiler": compiler,
                "seconds": time.perf_counter() - t0}


def write_record(claim_id: str, seeds, fast: bool, measured: dict, out_dir: Path | str = "results") -> dict:
    """Build the record from :func:`measure_seeds`'s result (``measurements`` in the order of ``seeds``),
    draw its figure and write both into ``out_dir`` atomically (nothing is written when drawing fails);
    returns the record."""
    c = get(claim_id)
    seeds = check_seeds(seeds)
    if len(measured["measurements"]) != len(seeds):
        raise ValueError(f"measured: needs one measurement per master seed ({len(seeds)}), "
                         f"got {len(measured['measurements'])}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = build_record(c, seeds, fast, measured["measurements"], measured["seconds"])
    if fast:
        record["compiler"] = measured["compiler"]
    text = io.dumps(record)  # serialize before anything is moved into place
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".staging-{claim_id}-"))
    try:
        draw(c, record, staging / "figures")
        (out_dir / "figures").mkdir(exist_ok=True)
        for fig in sorted((staging / "figures").glob("*")):
            fig.replace(out_dir / "figures" / fig.name)
        io.atomic_write_text(out_dir / f"{claim_id}.json", text)
        return json.loads(text)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run(claim_id: str, *, seeds=(0,), fast: bool = False, out_dir: Path | str = "results",
        progress: bool | None = None) -> dict:
    """Run one claim under every master seed; write ``out_dir/<id>.json`` and its figure, atomically
    (nothing is written when the claim fails); returns the record."""
    seeds = check_seeds(seeds)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    measured = measure_seeds(claim_id, seeds, fast, out_dir, progress)
    return write_record(claim_id, seeds, fast, measured, out_dir)
