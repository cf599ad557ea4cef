"""The claims: one file per claim, the folder named by the id's prefix, and the registry that lists them.

``zeroinit.hessian`` lives in ``toyllora/claims/zeroinit/hessian.py``, ``allora.vs-lora`` in
``toyllora/claims/allora/vs_lora.py``. Every claim file defines the same names, in this order:

* ``STATEMENT`` and ``SOURCE`` (``paper``, ``review`` or ``extension``); ``FLAW`` when the claim belongs to
  another flaw than its folder (e.g. ``allora.input-gradient`` answers flaw 3); ``WALL_CLOCK = True`` when its
  statistic is a wall-clock timing (``reproduce --jobs`` runs it alone, after the other claims);
* ``SETUP``: a :class:`Setup` of two instances of one frozen dataclass, the run of record (``full``) and a
  smoke test (``fast``) — the claim's numbers, written once;
* ``rule(p) -> str``: the rule, written before the run, formatted from a setup ``p``;
* ``measure(p, seed) -> dict``: runs the experiment for one master seed (task draws and optimization seeds
  derive from it) and returns JSON-ready measurements;
* ``verdict(m) -> str``: one of :data:`VERDICTS`, a pure function of the measurements as recorded (JSON:
  arrays are lists, non-finite floats are ``None``);
* ``plot(record) -> matplotlib.figure.Figure``: draws from the record alone, never reruns;
* ``VERDICT_EXAMPLES``: ``[(measurements, verdict), ...]``, synthetic measurements for every verdict the rule
  can reach and for each side of every threshold; ``tests/test_claims_contract.py`` holds every claim to them.

What several claims of one flaw share lives in that folder's ``_common.py``. A new claim is one new file and
its id added to :data:`CLAIMS`; the contract test, ``toyllora run``, ``reproduce``, ``figures`` and ``where``
then cover it.

Example:
    >>> from toyllora import claims
    >>> claims.module_name("allora.vs-lora")
    'toyllora.claims.allora.vs_lora'
    >>> claims.module_name("no-dot")
    Traceback (most recent call last):
    ...
    ValueError: claim: ids look like 'flaw.short-name', got 'no-dot'
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

VERDICTS = ("supported", "partly supported", "not supported", "inconclusive")
SOURCES = ("paper", "review", "extension")
FLAWS = ("dropout", "zeroinit", "ripple", "allora", "transfer")  # the flaws of the ledger (and most folders)
ID_PATTERN = re.compile(r"^([a-z0-9]+)\.([a-z0-9]+(?:-[a-z0-9]+)*)$")

# The registry, in report order: a claim is listed here and lives in the file its id names.
CLAIMS = (
    "zeroinit.gradient-asymmetry",
    "zeroinit.hessian",
    "zeroinit.escape-time",
    "zeroinit.balance",
    "zeroinit.dropout-escape",
    "zeroinit.unfair-regularization",
    "zeroinit.allora-landscape",
    "zeroinit.nonzero-inits",
    "dropout.output-ols",
    "dropout.input-ridge",
    "dropout.bottleneck-expectation",
    "dropout.concentration",
    "dropout.iterates",
    "dropout.steps-vs-stepsize",
    "dropout.gradient-tails",
    "dropout.expected-vs-sampled",
    "dropout.short-vs-long",
    "dropout.zero-vs-small",
    "dropout.crossover",
    "dropout.allora-fix",
    "ripple.bound",
    "ripple.normalization",
    "ripple.coupling",
    "ripple.hurts",
    "ripple.performance",
    "allora.input-gradient",
    "allora.vs-lora",
    "allora.vs-plain-lora",
    "allora.ablation",
    "allora.vs-baselines",
    "allora.dropout-neutral",
    "allora.family-ranking",
    "allora.eta-sensitivity",
    "allora.robustness",
    "allora.escape-speed",
    "allora.adam-cancellation",
    "allora.vs-adaptive-optimizers",
    "allora.rank-sweep",
    "allora.implicit-regularization",
    "allora.overhead",
    "lora.rank-stability",
    "lora.lora-plus-width",
    "transfer.zeroinit-escape",
    "transfer.dropout-crossover",
    "transfer.ripple",
    "transfer.head-to-head",
    "transfer.overhead",
    "transfer.allora-fix",
    "transfer.vs-plain-lora",
    "transfer.ripple-performance",
)


def parse_id(claim_id: str) -> tuple[str, str]:
    """``(folder, file stem)`` of a claim id; ValueError if it is not of the form ``flaw.short-name``."""
    m = ID_PATTERN.match(claim_id) if isinstance(claim_id, str) else None
    if not m:
        raise ValueError(f"claim: ids look like 'flaw.short-name', got {claim_id!r}")
    return m.group(1), m.group(2).replace("-", "_")


def module_name(claim_id: str) -> str:
    """The module that holds a claim: ``toyllora.claims.<prefix>.<name with - as _>``."""
    folder, stem = parse_id(claim_id)
    return f"toyllora.claims.{folder}.{stem}"


def file_stem(claim_id: str) -> str:
    """The id as a file name stem (figure scripts, figure files): ``zeroinit.hessian`` → ``zeroinit_hessian``."""
    folder, stem = parse_id(claim_id)
    return f"{folder}_{stem}"


@dataclasses.dataclass(frozen=True)
class Setup:
    """A claim's numbers: ``full`` (the run of record) and ``fast`` (a smoke test), one frozen dataclass each.

    >>> @dataclasses.dataclass(frozen=True)
    ... class P:
    ...     seeds: int = 5
    >>> s = Setup(full=P(), fast=P(seeds=2))
    >>> s.pick(fast=True).seeds, s.pick(fast=False).seeds
    (2, 5)
    """

    full: Any
    fast: Any

    def __post_init__(self):
        for name in ("full", "fast"):
            v = getattr(self, name)
            if not (dataclasses.is_dataclass(v) and not isinstance(v, type)):
                raise ValueError(f"{name}: a Setup variant must be a dataclass instance, got {type(v).__name__}")
            if not v.__dataclass_params__.frozen:
                raise ValueError(f"{name}: a Setup variant must be a frozen dataclass")
        if type(self.full) is not type(self.fast):
            raise ValueError(f"fast: must be the same dataclass as full ({type(self.full).__name__}), "
                             f"got {type(self.fast).__name__}")

    def pick(self, fast: bool):
        """The fast variant if ``fast`` else the full one."""
        return self.fast if fast else self.full


def fmt(values: Any) -> str:
    """A setup value as rule text: sequences as ``{a, b, c}``, floats with ``g``, the rest with ``str``.

    >>> fmt((2, 4, 8)), fmt(0.05), fmt([0.1, 1e-3]), fmt("adam")
    ('{2, 4, 8}', '0.05', '{0.1, 0.001}', 'adam')
    """
    if isinstance(values, (tuple, list)):
        return "{" + ", ".join(fmt(v) for v in values) + "}"
    if isinstance(values, float):
        return f"{values:g}"
    return str(values)
