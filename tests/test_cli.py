"""The ``toyllora`` command line: bad input is one line on stderr, exit status 2, no traceback, and no
output file; ``list`` shows every registered claim."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from toyllora.harness import cli, registry

# (argv with {tmp} for the temporary folder, start of the error message after "toyllora: error: ")
BAD_INPUT = [
    (["run", "no.such-claim", "--fast", "--out", "{tmp}/out"], "claim:"),
    (["run", "zeroinit.gradient-asymmetry", "--out", "{tmp}/file.txt"], "out:"),
    (["reproduce", "--fast", "--out", "{tmp}/file.txt"], "out:"),
    (["reproduce", "--fast", "--jobs", "0", "--out", "{tmp}/out"], "jobs:"),
    (["figures", "--fast", "--only", "no_such_figure", "--out", "{tmp}/out"], "claim:"),
    (["figures", "--fast", "--out", "{tmp}/file.txt"], "out:"),
    (["figures", "--fast", "--results", "{tmp}/file.txt"], "out:"),
    (["where", "no.such-claim"], "claim:"),
    (["docs", "--results", "{tmp}/out", "--readme", "{tmp}/README.md", "--proofs", "{tmp}"], "results:"),
    (["bench", "--fast", "--out", "{tmp}/out/bench.txt"], "out:"),
]
PARSE_ERRORS = [["no-such-command"], ["run"], ["reproduce", "--seed", "-1"], ["run", "x", "--seed", "one"],
                ["reproduce", "--seeds", "0,x"], ["reproduce", "--seed", "1", "--seeds", "2"], ["figures", "--bogus-flag"],
                ["run", "x", "--seeds", "0,0"], ["where"], []]


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "file.txt").write_text("keep me\n")
    (tmp_path / "README.md").write_text("<!-- section:ledger -->\n")
    return tmp_path


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv, prefix", BAD_INPUT, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _) in
                                                          enumerate(BAD_INPUT)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, prefix, tmp, capsys):
    before = _snapshot(tmp)
    rc = cli.main([a.format(tmp=tmp) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith(f"toyllora: error: {prefix}"), err
    assert _snapshot(tmp) == before and not (tmp / "out").exists()


@pytest.mark.parametrize("argv", PARSE_ERRORS, ids=lambda a: " ".join(a) or "nothing")
def test_usage_errors_are_one_line_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("toyllora"), err


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    """The same contract through the interpreter, as a user meets it (stderr, exit status)."""
    for argv in (["run", "no.such-claim", "--out", str(tmp_path / "o")], ["reproduce", "--seed", "x"]):
        p = subprocess.run([sys.executable, "-m", "toyllora.harness.cli", *argv], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 2 and p.stdout == "", p
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "o").exists()


def test_list_shows_every_registered_claim(capsys):
    assert cli.main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    claims = registry.all_claims()
    assert [c["id"] for c in listed] == list(claims)
    assert all(set(c) == {"id", "statement", "source", "flaw", "rule"} for c in listed)
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(claims)


def test_help_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "reproduce" in capsys.readouterr().out


def test_where_prints_the_claim_file_and_its_figure_script(capsys):
    assert cli.main(["where", "zeroinit.gradient-asymmetry"]) == 0
    out = capsys.readouterr().out
    assert "toyllora/claims/zeroinit/gradient_asymmetry.py" in out
    assert "figures/zeroinit_gradient_asymmetry.py" in out and "proofs/" in out and "tests/" in out
