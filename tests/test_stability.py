"""``toyllora stability``: a stable label is checked against the verdicts at master seeds the run did not use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from toyllora.harness import cli, registry, stability

IDS = list(registry.all_claims())[:4]


def _rec(cid, by_seed, code="c1", mode="full"):
    counts = {}
    for v in by_seed.values():
        counts[v] = counts.get(v, 0) + 1
    seeds = sorted(int(s) for s in by_seed)
    return {"id": cid, "mode": mode, "master_seeds": seeds, "verdict": max(counts, key=counts.get),
            "verdicts_by_seed": {str(s): v for s, v in by_seed.items()},
            "stability": {"label": "stable" if len(counts) == 1 else "unstable", "counts": counts},
            "cache_key": f"{cid}|mode={mode}|seeds={','.join(map(str, seeds))}|code={code}|setup=s1"}


def _write(folder, recs):
    folder.mkdir(parents=True, exist_ok=True)
    for r in recs:
        (folder / f"{r['id']}.json").write_text(json.dumps(r))
    return folder


@pytest.fixture
def runs(tmp_path):
    S, I = "supported", "inconclusive"
    base = _write(tmp_path / "base", [_rec(IDS[0], {s: S for s in range(5)}), _rec(IDS[1], {s: S for s in range(5)}),
                                      _rec(IDS[2], {0: S, 1: I, 2: S, 3: S, 4: S}),
                                      _rec(IDS[3], {s: S for s in range(5)})])
    other = _write(tmp_path / "other", [_rec(IDS[0], {5: S, 6: S}), _rec(IDS[1], {5: S, 6: I}),
                                        _rec(IDS[2], {5: S, 6: S}), _rec(IDS[3], {5: S, 6: S}, code="c2")])
    return base, other


def test_each_status_and_the_summary(runs):
    rows = stability.compare(*runs)
    assert [(r["id"], r["status"]) for r in rows] == list(zip(IDS, ["holds", "differs", "unstable", "other code"]))
    assert rows[1]["new"] == {5: "supported", 6: "inconclusive"} and rows[0]["seeds"] == [0, 1, 2, 3, 4]
    assert stability.table(rows).splitlines()[-1] == f"1 of 2 stable labels hold at the other seeds; differ: {IDS[1]}"


def test_seeds_both_runs_used_are_not_new(tmp_path):
    base = _write(tmp_path / "a", [_rec(IDS[0], {0: "supported", 1: "supported"})])
    other = _write(tmp_path / "b", [_rec(IDS[0], {1: "inconclusive", 2: "supported"})])
    (row,) = stability.compare(base, other)
    assert row["new"] == {2: "supported"} and row["status"] == "holds"
    same = _write(tmp_path / "c", [_rec(IDS[0], {0: "supported"})])
    assert stability.compare(base, same)[0]["status"] == "no new seeds"


def test_bad_folders_and_fast_records_are_value_errors(runs, tmp_path):
    base, other = runs
    with pytest.raises(ValueError, match="^against: .* is not a folder"):
        stability.compare(base, tmp_path / "missing")
    with pytest.raises(ValueError, match="^against: no record"):
        stability.compare(base, _write(tmp_path / "empty", []))
    fast = _write(tmp_path / "fast", [_rec(IDS[0], {5: "supported"}, mode="fast")])
    with pytest.raises(ValueError, match="^against: .*--fast record"):
        stability.compare(base, fast)


def test_the_command_prints_the_table_and_bad_input_is_one_line(runs, tmp_path, capsys):
    base, other = runs
    assert cli.main(["stability", "--results", str(base), "--against", str(other)]) == 0
    assert f"| `{IDS[1]}` | supported (stable) | 5: supported, 6: inconclusive | differs |" in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "toyllora.harness.cli", "stability", "--results", str(base),
                           "--against", str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "against:" in proc.stderr
