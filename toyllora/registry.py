"""The claim registry: every claim has an id, a statement, a source, a rule written before the run, an
experiment that measures it, and a verdict function that turns the measurements into a verdict.

Example:
    >>> from toyllora import registry
    >>> c = registry.get("zeroinit.gradient-asymmetry")
    >>> c.source, c.flaw
    ('paper', 'zeroinit')
    >>> registry.get("no.such-claim")
    Traceback (most recent call last):
    ...
    ValueError: claim: unknown id 'no.such-claim'; run `toyllora list` for the allowed ids
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from toyllora import io

VERDICTS = ("supported", "partly supported", "not supported", "inconclusive")
SOURCES = ("paper", "review", "extension")
FLAWS = ("dropout", "zeroinit", "ripple", "allora")
ID_PATTERN = re.compile(r"^[a-z0-9]+(\.[a-z0-9-]+)+$")

# The modules whose import registers claims, in report order. Add a module here to add its claims.
CLAIM_MODULES = (
    "toyllora.claims.zeroinit",
    "toyllora.claims.dropout",
    "toyllora.claims.ripple",
    "toyllora.claims.headtohead",
)

_REGISTRY: dict[str, "Claim"] = {}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim. ``experiment(ctx) -> measurements``; ``verdict(measurements) -> one of VERDICTS``."""

    id: str
    statement: str
    source: str
    flaw: str
    rule: str
    experiment: Callable
    verdict: Callable


class Context:
    """What an experiment gets: the seed, fast mode, a config dict to fill, and a way to save figures."""

    def __init__(self, claim_id: str, seed: int, fast: bool, staging: Path):
        self.claim_id, self.seed, self.fast = claim_id, seed, fast
        self.config: dict = {"seed": seed, "fast": fast}
        self.figures: list[str] = []
        self._staging = staging

    def save_figure(self, fig, name: str = "main") -> str:
        """Save a matplotlib figure as ``figures/<id>[-name].png`` and ``.pdf``; returns the PNG path."""
        if not re.fullmatch(r"[a-z0-9_-]+", name):
            raise ValueError(f"name: figure names use [a-z0-9_-] only, got {name!r}")
        stem = self.claim_id if name == "main" else f"{self.claim_id}-{name}"
        io.save_figure(fig, self._staging / "figures" / stem)
        rel = f"figures/{stem}.png"
        self.figures.append(rel)
        return rel


def claim(*, id: str, statement: str, source: str, flaw: str, rule: str, verdict: Callable):
    """Decorator: register ``experiment(ctx) -> measurements`` as a claim."""
    if not ID_PATTERN.match(id):
        raise ValueError(f"id: claim ids look like 'flaw.short-name', got {id!r}")
    if source not in SOURCES:
        raise ValueError(f"source: unknown value {source!r}; allowed: {SOURCES}")
    if flaw not in FLAWS:
        raise ValueError(f"flaw: unknown value {flaw!r}; allowed: {FLAWS}")

    def register(fn):
        if id in _REGISTRY and _REGISTRY[id].experiment.__qualname__ != fn.__qualname__:
            raise ValueError(f"id: claim {id!r} is registered twice")
        _REGISTRY[id] = Claim(id, statement, source, flaw, rule, fn, verdict)
        return fn

    return register


def all_claims() -> dict[str, Claim]:
    """Every registered claim, in report order."""
    for name in CLAIM_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return dict(_REGISTRY)


def get(claim_id: str) -> Claim:
    claims = all_claims()
    if claim_id not in claims:
        raise ValueError(f"claim: unknown id {claim_id!r}; run `toyllora list` for the allowed ids")
    return claims[claim_id]


def cache_key(claim_id: str, seed: int, fast: bool) -> str:
    return f"{claim_id}|seed={seed}|fast={fast}|code={io.code_hash()}"


def run(claim_id: str, *, seed: int = 0, fast: bool = False, out_dir: Path | str = "results") -> dict:
    """Run one claim and write ``out_dir/<id>.json`` and its figures, atomically (nothing on failure)."""
    c = get(claim_id)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".staging-{claim_id}-"))
    try:
        ctx = Context(claim_id, seed, fast, staging)
        t0 = time.perf_counter()
        measurements = c.experiment(ctx)
        seconds = time.perf_counter() - t0
        verdict = c.verdict(measurements)
        if verdict not in VERDICTS:
            raise RuntimeError(f"claim {claim_id}: verdict function returned {verdict!r}, not one of {VERDICTS}")
        record = {"id": c.id, "statement": c.statement, "source": c.source, "flaw": c.flaw, "rule": c.rule,
                  "verdict": verdict, "measurements": measurements, "figures": ctx.figures,
                  "config": ctx.config, "versions": io.versions(), "seconds": round(seconds, 3),
                  "cache_key": cache_key(claim_id, seed, fast)}
        text = io.dumps(record)  # serialize before anything is moved into place
        for fig in sorted((staging / "figures").glob("*")) if (staging / "figures").exists() else []:
            (out_dir / "figures").mkdir(exist_ok=True)
            fig.replace(out_dir / "figures" / fig.name)
        io.atomic_write_text(out_dir / f"{claim_id}.json", text)
        return io.json.loads(text)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
