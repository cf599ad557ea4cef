"""One contract for every registered claim (as optax holds every optimizer to ``_common_test.py``).

For each claim in :data:`toyllora.claims.CLAIMS`: its file path matches its id; ``SETUP`` has a full and a fast
variant; ``verdict`` returns the expected verdict on every ``VERDICT_EXAMPLE`` and the examples reach every
verdict the rule names; the fast run wrote the JSON contract; and ``plot`` draws from that record alone (with
the experiment disabled). A new claim gets all of this by being listed in ``CLAIMS``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from toyllora import claims as claims_pkg
from toyllora.claims import CLAIMS, VERDICTS
from toyllora.harness import registry

ROOT = Path(__file__).resolve().parent.parent
RECORD_KEYS = {"id", "statement", "source", "rule", "verdict", "measurements", "figures", "config", "versions",
               "seconds"}
# a verdict named in a rule: "partly supported", "not supported", "inconclusive", or a bare "supported"
NAMED = re.compile(r"\b(partly supported|not supported|inconclusive|(?<!partly )(?<!not )supported)\b", re.I)


def named_verdicts(rule: str) -> set[str]:
    """The verdicts a rule text names."""
    return {v.lower() for v in NAMED.findall(rule)}


def test_named_verdicts_reads_rule_texts():
    assert named_verdicts("supported if a; partly supported if b; not supported otherwise") == \
        {"supported", "partly supported", "not supported"}
    assert named_verdicts("Supported if x, otherwise Not supported.") == {"supported", "not supported"}
    assert named_verdicts("inconclusive when n is 0") == {"inconclusive"}


def test_every_claim_file_is_registered():
    """A claim file that is not in CLAIMS (or a listed id without its file) is a mistake."""
    files = {f"{p.parent.name}.{p.stem.replace('_', '-')}" for p in (ROOT / "toyllora" / "claims").glob("*/*.py")
             if not p.name.startswith("_")}
    assert files == set(CLAIMS), {"unlisted files": sorted(files - set(CLAIMS)),
                                  "listed without a file": sorted(set(CLAIMS) - files)}
    assert len(CLAIMS) == len(set(CLAIMS))


@pytest.fixture(scope="module", params=CLAIMS)
def claim(request):
    return registry.get(request.param)


def test_file_path_matches_id(claim):
    folder, stem = claims_pkg.parse_id(claim.id)
    assert claim.path == ROOT / "toyllora" / "claims" / folder / f"{stem}.py"
    assert claim.module.__name__ == claims_pkg.module_name(claim.id)


def test_a_timing_claim_says_so(claim):
    """A claim that times steps on the wall clock (it imports one of the bench's timing modules) declares
    ``WALL_CLOCK = True``, so that ``reproduce --jobs`` runs it alone; no other claim does."""
    text = claim.path.read_text()
    times = any(re.search(rf"\b{m}\b", text) for m in ("bench_timing", "bench_allora"))
    assert getattr(claim.module, "WALL_CLOCK", False) in (True, False)
    assert claim.wall_clock == times, claim.id


def test_setup_has_a_full_and_a_fast_variant(claim):
    s = claim.setup
    assert dataclasses.is_dataclass(s.full) and type(s.full) is type(s.fast)
    assert s.full != s.fast, "the fast variant is smaller than the full one"
    for p in (s.full, s.fast):
        json.dumps(dataclasses.asdict(p))  # the recorded config is plain JSON
        text = claim.module.rule(p)
        assert isinstance(text, str) and len(text) > 40
    assert claim.statement and claim.source in claims_pkg.SOURCES


def test_verdict_examples_give_their_verdicts_and_reach_every_named_verdict(claim):
    examples = claim.examples
    assert examples, "VERDICT_EXAMPLES is empty"
    got = []
    for i, (m, expected) in enumerate(examples):
        assert expected in VERDICTS, (i, expected)
        m = json.loads(json.dumps(m))  # a verdict sees measurements as recorded
        assert claim.verdict(m) == expected, f"example {i}: expected {expected!r}"
        got.append(expected)
    named = named_verdicts(claim.rule(fast=False))
    assert named, "the rule names no verdict"
    assert named <= set(got), f"no example reaches {sorted(named - set(got))}"
    assert set(got) <= named, f"examples reach {sorted(set(got) - named)}, which the rule does not name"


def test_fast_run_wrote_the_json_contract(claim, fast_run):
    assert fast_run["rc"] == 0 or claim.id not in _failed(fast_run), _failed(fast_run).get(claim.id)
    rec = json.loads((fast_run["out"] / f"{claim.id}.json").read_text())
    assert RECORD_KEYS <= set(rec)
    assert rec["id"] == claim.id and rec["verdict"] in VERDICTS and rec["mode"] == "fast"
    assert rec["rule"] == claim.rule(fast=True) and rec["statement"] == claim.statement
    assert rec["config"]["setup"] == json.loads(json.dumps(dataclasses.asdict(claim.setup.fast)))
    assert rec["verdicts_by_seed"] == {"0": rec["verdict"]} and rec["stability"]["label"] == "stable"
    assert claim.verdict(rec["measurements"]) == rec["verdict"], "the verdict follows from the recorded numbers"
    for f in rec["figures"]:
        assert (fast_run["out"] / f).stat().st_size > 0


def test_plot_draws_from_the_record_alone(claim, fast_run, monkeypatch):
    """No experiment may run while plotting: measure, the Trainer and the simulators are disabled."""
    import matplotlib.pyplot as plt

    from toyllora import train
    from toyllora.theory import dynamics

    def boom(*a, **k):
        raise AssertionError("plot() reran an experiment")

    monkeypatch.setattr(claim.module, "measure", boom)
    monkeypatch.setattr(train.Trainer, "run", boom)
    monkeypatch.setattr(train.Trainer, "sweep", boom)
    monkeypatch.setattr(dynamics, "simulate", boom)
    rec = json.loads((fast_run["out"] / f"{claim.id}.json").read_text())
    fig = claim.plot(rec)
    assert fig.axes, "the figure has axes"
    plt.close(fig)


def _failed(run):
    path = run["out"] / "reproduce_time.json"
    return json.loads(path.read_text())["failed"] if path.exists() else {}
