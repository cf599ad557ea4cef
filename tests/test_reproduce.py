"""``toyllora reproduce``: caching, atomic writes under interruption, determinism, REPORT.md, and one
end-to-end ``--fast`` run of every registered claim (the only test that runs them all).

Reliability tests use small fake claims (monkeypatched registry) so they are fast and independent of the
real claims; the end-to-end test checks the real ones generically, whatever is registered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from toyllora.claims import VERDICTS, Setup, parse_id
from toyllora.harness import io, registry, report, reproduce

RECORD_KEYS = {"id", "statement", "source", "rule", "verdict", "measurements", "figures", "config", "versions",
               "seconds"}
TIMING_FIELDS = ("seconds",)
FAKE_CODE = "fake-code-hash00"  # the only per-claim JSON field allowed to differ between two identical runs


# ------------------------------------------------------------------------------------------ fake claims
@dataclasses.dataclass(frozen=True)
class FakeParams:
    n: int = 16


def fake_module(cid: str, behaviour: dict) -> types.ModuleType:
    """A claim module obeying the contract of :mod:`toyllora.claims`; ``behaviour[cid]`` alters it:
    'interrupt' (Ctrl-C inside measure), 'fail' (raises), 'unstable' (the verdict depends on the seed)."""
    m = types.ModuleType(f"fake_{cid}")
    m.__file__ = f"/fake/{cid}.py"
    m.STATEMENT, m.SOURCE = f"fake claim {cid}", "extension"
    m.SETUP = Setup(full=FakeParams(16), fast=FakeParams(8))
    m.rule = lambda p: f"supported if mean > -10 over {p.n} draws, otherwise not supported"

    def measure(p, seed):
        action = behaviour.get(cid)
        if action == "interrupt":
            raise KeyboardInterrupt
        if action == "fail":
            raise RuntimeError(f"{cid} broke on purpose")
        x = np.random.default_rng(seed).standard_normal(p.n)
        mean = -100.0 if action == "unstable" and seed % 2 else float(x.mean())
        return {"mean": mean, "curve": np.cumsum(x), "table_md": "| a | b |\n|---|---|\n| 1 | 2 |"}

    def plot(record):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot(record["measurements"]["curve"])
        return fig

    m.measure, m.plot = measure, plot
    m.verdict = lambda meas: "supported" if meas["mean"] > -10 else "not supported"
    m.VERDICT_EXAMPLES = [({"mean": 0.0}, "supported"), ({"mean": -11.0}, "not supported")]
    return m


def fake_claims(behaviour=None) -> dict:
    behaviour = {} if behaviour is None else behaviour
    out = {}
    for tag, flaw in (("one", "dropout"), ("two", "zeroinit"), ("three", "ripple")):
        cid = f"{flaw}.fake-{tag}"
        out[cid] = registry.Claim(cid, fake_module(cid, behaviour))
    return out


def install(claims: dict, setattr_) -> None:
    """Make the registry serve ``claims`` (``setattr_``: monkeypatch.setattr or plain setattr)."""
    setattr_(registry, "all_claims", lambda: dict(claims))
    setattr_(registry, "get", lambda cid: claims[cid] if cid in claims else
             (_ for _ in ()).throw(ValueError(f"claim: unknown id {cid!r}")))
    # the fakes do not depend on the toyllora source; a fixed hash keeps these tests independent of edits
    setattr_(registry, "_source_hashes", lambda cid: (FAKE_CODE, "fake-figure-hash"))
    setattr_(io, "code_hash", lambda: FAKE_CODE)


@pytest.fixture
def fakes(monkeypatch):
    """Replace the registry by three fake claims; ``behaviour[id] = 'interrupt' | 'fail' | 'unstable'``."""
    behaviour = {}
    claims = fake_claims(behaviour)
    install(claims, monkeypatch.setattr)
    return claims, behaviour


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def without_timing(text: str) -> str:
    rec = json.loads(text)
    for k in TIMING_FIELDS:
        rec.pop(k, None)
    return io.dumps(rec)


# ------------------------------------------------------------------------------------------ the tests
def test_writes_records_report_and_timing(fakes, tmp_path):
    claims, _ = fakes
    res = reproduce.reproduce(tmp_path, fast=True, progress=False)
    assert res["ran"] == list(claims) and not res["cached"] and not res["failed"]
    timing = json.loads((tmp_path / reproduce.TIMING_FILE).read_text())
    assert timing["seconds"] > 0 and set(timing["claim_seconds"]) == set(claims)
    text = (tmp_path / "REPORT.md").read_text()
    assert "smoke test" in text  # fast mode is labelled
    for cid in claims:
        rec = json.loads((tmp_path / f"{cid}.json").read_text())
        assert RECORD_KEYS <= set(rec) and rec["verdict"] in VERDICTS and rec["master_seeds"] == [0]
        assert rec["config"]["setup"] == {"n": 8} and rec["mode"] == "fast"
        assert f"### `{cid}` — {report.verdict_label(rec)}" in text
        assert all((tmp_path / f).exists() for f in rec["figures"])
    assert "| a | b |\n|---|---|\n| 1 | 2 |" in text  # Markdown tables from measurements shown as is
    assert "| **all** | 3 | 0 | 0 | 0 | 3 |" in text
    assert not io.stale_temps(tmp_path)


def test_cache_skips_current_results_and_reruns_stale_ones(fakes, tmp_path):
    claims, _ = fakes
    ids = list(claims)
    reproduce.reproduce(tmp_path, fast=True, progress=False)
    assert reproduce.reproduce(tmp_path, fast=True, progress=False)["cached"] == ids
    assert reproduce.reproduce(tmp_path, fast=True, progress=False, force=True)["ran"] == ids
    assert reproduce.reproduce(tmp_path, fast=False, seeds=(0,), progress=False)["ran"] == ids  # other mode
    assert reproduce.reproduce(tmp_path, fast=False, seeds=(1,), progress=False)["ran"] == ids  # other seed
    # a corrupted record, a deleted figure, a record from another x64 setting: each is rerun
    (tmp_path / f"{ids[0]}.json").write_text('{"id": ')
    (tmp_path / json.loads((tmp_path / f"{ids[1]}.json").read_text())["figures"][0]).unlink()
    rec = json.loads((tmp_path / f"{ids[2]}.json").read_text())
    rec["versions"]["x64"] = not rec["versions"]["x64"]
    io.write_json(tmp_path / f"{ids[2]}.json", rec)
    res = reproduce.reproduce(tmp_path, fast=False, seeds=(1,), progress=False)
    assert res["ran"] == ids[:1] + ids[2:] and res["cached"] == ids[1:2]  # a lost figure is redrawn, not rerun
    assert (tmp_path / json.loads((tmp_path / f"{ids[1]}.json").read_text())["figures"][0]).exists()


def test_cache_key_tracks_code_seeds_mode_and_setup(fakes, monkeypatch):
    claims, _ = fakes
    cid = next(iter(claims))
    k = registry.cache_key(cid, (0,), True)
    assert k != registry.cache_key(cid, (1,), True) != registry.cache_key(cid, (0,), False)
    assert registry.cache_key(cid, (0, 1), True) != k
    monkeypatch.setattr(registry, "_source_hashes", lambda c: ("0" * 16, "fig"))
    assert registry.cache_key(cid, (0,), True) != k


def test_cache_key_ignores_the_harness_docstrings_and_plots_but_not_science(tmp_path, monkeypatch):
    """The key of a claim covers its own code (plots and docstrings aside) and the science modules it
    imports, never the harness: editing report.py or cli.py invalidates no record."""
    deps = registry.dependencies("toyllora.claims.zeroinit.gradient_asymmetry")
    assert "toyllora.models" in deps and "toyllora.lora" in deps
    assert not any(d.startswith("toyllora.harness") for d in deps)
    import ast

    src = "def measure(p, s):\n    return 1\n\ndef plot(r):\n    return 2\n"
    edited_plot = src.replace("return 2", "return 3")
    edited_measure = src.replace("return 1", "return 4")
    strip = lambda s: registry._strip(ast.parse(s), drop_plots=True)
    assert strip(src) == strip(edited_plot) == strip('"""doc"""\n' + src)
    assert strip(src) != strip(edited_measure)
    # the SETUP line is hashed by value instead (the picked variant), so a new fast setup keeps full records
    with_setup = "SETUP = Setup(full=P(), fast=P(n=2))\n" + src
    assert strip(with_setup) == strip(with_setup.replace("n=2", "n=3")) == strip(src)
    # registering another claim (the CLAIMS list of toyllora.claims) invalidates no record; FLAWS still counts
    pkg = 'FLAWS = ("a",)\nCLAIMS = ("a.x",)\n'
    reg = lambda s: registry._strip(ast.parse(s), drop_registry=True)
    assert reg(pkg) == reg(pkg.replace('"a.x"', '"a.x", "a.y"')) != reg(pkg.replace('("a",)', '("a", "b")'))


def test_cached_module_hashes_follow_an_edit_of_the_module_text():
    """The per-module parts of a key are cached by the module's text: the same text gives the same parts,
    an edited science line gives another measurement part, an edited plot only another figure part."""
    src = "import numpy as np\n\ndef measure(p, s):\n    return 1\n\ndef plot(r):\n    return 2\n"
    dep = "toyllora.claims.fake.one"
    base = registry._hashed_parts(dep, src, False)
    assert registry._hashed_parts(dep, src, False) is base          # cached
    measure_edit = registry._hashed_parts(dep, src.replace("return 1", "return 4"), False)
    plot_edit = registry._hashed_parts(dep, src.replace("return 2", "return 3"), False)
    assert measure_edit[0] != base[0] and measure_edit[1] == base[1]
    assert plot_edit[0] == base[0] and plot_edit[1] != base[1]
    assert registry._imports_of_text(dep, "from toyllora import lora\n") == (
        "toyllora", "toyllora.claims", "toyllora.claims.fake", "toyllora.lora")


def test_a_fast_run_compiles_unoptimized_and_restores_the_flag(monkeypatch):
    """Fast (smoke-test) runs compile with most XLA optimizations off, those of the execution-bound folders and
    full runs with them; the flag is restored afterwards, TOYLLORA_FAST_OPTIMIZE=1 keeps them on, and a switch
    of setting clears JAX's in-memory caches (a record never reuses a program compiled the other way)."""
    import jax

    monkeypatch.delenv(registry.FAST_COMPILER_ENV, raising=False)
    monkeypatch.setitem(registry._compiled_under, "setting", None)
    with registry.xla_optimizations(True):   # a process that compiles optimized, as `toyllora` does
        _fast_run_compiles_unoptimized_and_restores_the_flag(monkeypatch, jax, registry.COMPILER_FLAG)


def _fast_run_compiles_unoptimized_and_restores_the_flag(monkeypatch, jax, flag):
    square = jax.jit(lambda x: x * x)
    square(1.0)
    with registry.compiler_for(True, "allora.ablation") as name:
        assert jax.config.values[flag] and "off" in name
        assert square._cache_size() == 0          # compiled optimized before: cleared
        square(1.0)
    assert not jax.config.values[flag]
    for fast, cid in ((False, "allora.ablation"), (True, next(iter(registry.FAST_OPTIMIZED_FOLDERS)) + ".x")):
        with registry.compiler_for(fast, cid) as name:
            assert not jax.config.values[flag] and name == "optimized"
    monkeypatch.setenv(registry.FAST_COMPILER_ENV, "1")
    with registry.compiler_for(True, "allora.ablation") as name:
        assert not jax.config.values[flag] and name == "optimized"
    assert registry.FAST_OPTIMIZED_FOLDERS <= {c.split(".")[0] for c in registry.all_claims()}
    # the compiled program computes the same thing either way (a smoke test, not the record)
    f = lambda x: jax.numpy.tanh(x) @ x.T
    x = jax.numpy.linspace(-1, 1, 12).reshape(3, 4)
    monkeypatch.delenv(registry.FAST_COMPILER_ENV)
    with registry.compiler_for(True, "allora.ablation"):
        off = jax.jit(lambda x: f(x) + 0)(x)
    np.testing.assert_allclose(off, f(x), rtol=1e-5, atol=1e-6)

def test_compiler_for_starts_from_the_process_setting(monkeypatch):
    """In a process that compiles with most optimizations off (the test suite), the first full-run claim
    clears the in-memory caches too: its record never reuses a program compiled unoptimized."""
    import jax

    flag = registry.COMPILER_FLAG
    monkeypatch.setitem(registry._compiled_under, "setting", None)
    with registry.xla_optimizations(False):
        square = jax.jit(lambda x: x * x)
        square(1.0)
        with registry.compiler_for(False, "allora.ablation") as name:
            assert name == "optimized" and not jax.config.values[flag] and square._cache_size() == 0
        assert jax.config.values[flag]


def test_unstable_verdicts_are_labelled_and_kept_per_seed(fakes, tmp_path):
    claims, behaviour = fakes
    ids = list(claims)
    behaviour[ids[0]] = "unstable"  # odd seeds flip the verdict
    reproduce.reproduce(tmp_path, fast=False, seeds=(0, 1, 2), progress=False)
    rec = json.loads((tmp_path / f"{ids[0]}.json").read_text())
    assert rec["verdicts_by_seed"] == {"0": "supported", "1": "not supported", "2": "supported"}
    assert rec["stability"] == {"label": "unstable", "counts": {"supported": 2, "not supported": 1}}
    assert rec["verdict"] == "supported" and set(rec["measurements_by_seed"]) == {"1", "2"}
    stable = json.loads((tmp_path / f"{ids[1]}.json").read_text())
    assert stable["stability"]["label"] == "stable"
    text = (tmp_path / "REPORT.md").read_text()
    assert "supported (unstable: 2 supported, 1 not supported)" in text and "Verdict by master seed" in text


def test_interrupt_keeps_earlier_results_and_leaves_no_partial_file(fakes, tmp_path):
    claims, behaviour = fakes
    ids = list(claims)
    reproduce.reproduce(tmp_path, fast=True, progress=False)
    before = snapshot(tmp_path)
    behaviour[ids[1]] = "interrupt"  # Ctrl-C inside the 2nd claim, after it saved its figure
    with pytest.raises(KeyboardInterrupt):
        reproduce.reproduce(tmp_path, fast=True, progress=False, force=True)
    after = snapshot(tmp_path)
    assert set(after) == set(before)
    for name in after:  # the 1st claim was rewritten (same content); everything else is untouched
        if name.endswith(".json") and name != reproduce.TIMING_FILE:
            assert without_timing(after[name].decode()) == without_timing(before[name].decode()), name
        elif name != reproduce.TIMING_FILE:
            assert after[name] == before[name], name
    assert not io.stale_temps(tmp_path)


def test_a_failing_claim_is_reported_and_the_others_still_run(fakes, tmp_path):
    claims, behaviour = fakes
    ids = list(claims)
    behaviour[ids[1]] = "fail"
    res = reproduce.reproduce(tmp_path, fast=True, progress=False)
    assert res["ran"] == [ids[0], ids[2]] and list(res["failed"]) == [ids[1]]
    assert "broke on purpose" in res["failed"][ids[1]]["error"]
    assert not (tmp_path / f"{ids[1]}.json").exists() and not io.stale_temps(tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Failed runs" in text and f"`{ids[1]}`: RuntimeError" in text


def test_same_seed_gives_identical_json_and_figures(fakes, tmp_path):
    reproduce.reproduce(tmp_path / "a", fast=True, progress=False)
    reproduce.reproduce(tmp_path / "b", fast=True, progress=False)
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert set(a) == set(b)
    for name in a:
        if name in ("REPORT.md", reproduce.TIMING_FILE):
            continue  # both hold wall times
        if name.endswith(".json"):
            assert without_timing(a[name].decode()) == without_timing(b[name].decode()), name
        else:
            assert a[name] == b[name], name  # PNG and PDF bytes too


def test_out_must_be_a_folder(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="^out:"):
        reproduce.reproduce(f, fast=True, progress=False)
    with pytest.raises(ValueError, match="^seeds:"):
        reproduce.reproduce(tmp_path / "new", seeds=(-1,), progress=False)
    with pytest.raises(ValueError, match="^seeds:"):
        reproduce.reproduce(tmp_path / "new", seeds=(1, 1), progress=False)
    assert f.read_text() == "x" and not (tmp_path / "new").exists()


# ----------------------------------------------------------------------- a real process, killed mid-run
KILL_SCRIPT = textwrap.dedent("""
    import signal, sys, time
    # Python's own SIGINT handler even where the parent ignores SIGINT (a non-interactive shell starts its
    # background jobs so, and the child inherits it): the test is about reproduce's unwinding, not the shell
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    import test_reproduce as tr
    from toyllora.harness import registry, reproduce
    claims = tr.fake_claims({{}})
    slow = list(claims)[1]
    inner = claims[slow].module.measure
    def sleepy(p, seed):
        out = inner(p, seed)
        print("sleeping", flush=True)
        time.sleep(60)
        return out
    claims[slow].module.measure = sleepy
    tr.install(claims, setattr)
    reproduce.reproduce(sys.argv[1], fast=True, progress=False)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_process_loses_nothing_and_next_run_cleans_up(fakes, tmp_path, sig):
    claims, _ = fakes
    ids = list(claims)
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "sleeping", proc.stderr.read()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=120)   # generous: on a loaded 2-core machine the exit once took over 30 s
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"the run did not stop within 120 s of {sig!r}; its stderr:\n{proc.communicate()[1][-4000:]}")
    finally:
        proc.kill()
    assert proc.returncode != 0
    first = json.loads((out / f"{ids[0]}.json").read_text())  # finished before the kill: complete
    assert first["id"] == ids[0] and all((out / f).exists() for f in first["figures"])
    assert not (out / f"{ids[1]}.json").exists() and not (out / "REPORT.md").exists()
    final = [p.name for d in (out, out / "figures") for p in d.iterdir() if not p.name.startswith(".")]
    assert not any(n.startswith(ids[1]) for n in final)  # nothing of the killed claim under a final name
    if sig == signal.SIGINT:  # Python unwinds: the staging folder is removed
        assert not io.stale_temps(out)
    res = reproduce.reproduce(out, fast=True, progress=False)
    assert res["cached"] == [ids[0]] and res["ran"] == ids[1:]
    assert not io.stale_temps(out)


# ------------------------------------------------------------------------- "does ALLoRA fix it?" logic
def _rec(cid, verdict):
    return {"id": cid, "flaw": cid.split(".")[0], "verdict": verdict}


@pytest.mark.parametrize("verdicts, word", [
    (("supported", "supported"), "**Yes**"), (("not supported", "not supported"), "**No**"),
    (("inconclusive", "inconclusive"), "**Undecided**"), (("supported", "not supported"), "**Partly**"),
    (("partly supported", "partly supported"), "**Partly**")])
def test_fix_answer_is_computed_from_the_cited_verdicts(verdicts, word):
    cited = report.FIX_EVIDENCE["ripple"]
    assert len(cited) == 2
    by_id = {c: _rec(c, v) for c, v in zip(cited, verdicts)}
    text = report.fix_answer("ripple", by_id, registered=cited)
    assert text.startswith(word) and all(f"`{c}`: {v}" in text for c, v in zip(cited, verdicts))


def test_fix_answer_says_when_a_cited_claim_is_missing():
    cited = report.FIX_EVIDENCE["ripple"]
    text = report.fix_answer("ripple", {cited[0]: _rec(cited[0], "supported")}, registered=cited[:1])
    assert text.startswith("**Not answered.**") and f"`{cited[1]}` is not registered" in text
    text = report.fix_answer("ripple", {cited[0]: _rec(cited[0], "supported")}, registered=cited)
    assert f"`{cited[1]}` has no result" in text


def test_measured_numbers_are_readable():
    tables, scalars = report.flatten({"a": {"b": 1.23456789, "curve": list(range(100))}, "t_md": "| x |\n|---|",
                                      "pair": [1.0, None], "rows": [{"k": 1}, {"k": 2}]})
    assert tables == [("t_md", "| x |\n|---|"), ("rows", "| | `k` |\n|---|---|\n| `[0]` | 1 |\n| `[1]` | 2 |")]
    assert dict(scalars) == {"a.b": "1.235", "a.curve": "100 values, min 0, max 99, last 99", "pair": "[1, None]"}
    tables, scalars = report.flatten({"seed0": {"loss": 0.5, "acc": [0.1, 0.2]}, "seed1": {"loss": 0.25, "acc": []}})
    assert tables == [("measurements", "| | `loss` | `acc` |\n|---|---|---|\n| `seed0` | 0.5 | [0.1, 0.2] |\n"
                                       "| `seed1` | 0.25 | [] |")] and not scalars


# ------------------------------------------------------------------------ end to end, every real claim
from conftest import OUTSIDE_OK  # noqa: E402


def skip_if_source_changed(run):
    """The cache and byte-identity hold for one version of the code; in a checkout being edited while the
    tests run, the hash of the toyllora source can change under them."""
    if io.code_hash() != run["code"]:
        pytest.skip("the toyllora source changed during this test session")


def test_end_to_end_every_claim_has_a_valid_record(fast_run):
    import matplotlib

    out = fast_run["out"]
    claims = registry.all_claims()
    timing = json.loads((out / reproduce.TIMING_FILE).read_text())
    assert fast_run["rc"] == 0, f"failed claims: {timing['failed']}"
    text = (out / "REPORT.md").read_text()
    for cid, c in claims.items():
        rec = json.loads((out / f"{cid}.json").read_text())
        assert RECORD_KEYS <= set(rec), cid
        assert rec["id"] == cid and rec["verdict"] in VERDICTS and rec["flaw"] == c.flaw, cid
        assert rec["mode"] == "fast" and rec["master_seeds"] == [0], cid
        for fig in rec["figures"]:
            assert (out / fig).stat().st_size > 0 and (out / fig).with_suffix(".pdf").exists(), (cid, fig)
            assert f"]({fig})" in text
        assert f"### `{cid}` — {report.verdict_label(rec)}" in text
    assert "| **all** |" in text and not io.stale_temps(out)
    # nothing written outside the output folder (caches of matplotlib and Python's bytecode aside)
    allowed = (str(out),) + OUTSIDE_OK + (matplotlib.get_cachedir(),)
    outside = sorted({p for p in fast_run["written"] if not any(a in os.path.abspath(p) for a in allowed)})
    assert not outside, outside


def test_end_to_end_rerun_of_a_claim_is_byte_identical(fast_run, tmp_path):
    """The quickest real claim, run again with the same seed: identical JSON (but ``seconds``), figures."""
    skip_if_source_changed(fast_run)
    out = fast_run["out"]
    timing = json.loads((out / reproduce.TIMING_FILE).read_text())
    assert timing["claim_seconds"]
    cid = min(timing["claim_seconds"], key=timing["claim_seconds"].get)
    # the same inputs: a transfer claim reads the base model cached in its results folder (whose record
    # keeps its own pre-training time), so the rerun gets that cached model, as a rerun into `out` would
    for base in out.glob("transformer*.npz"):
        shutil.copy2(base, tmp_path / base.name)
    rec = registry.run(cid, seeds=(0,), fast=True, out_dir=tmp_path)
    assert without_timing((tmp_path / f"{cid}.json").read_text()) == \
        without_timing((out / f"{cid}.json").read_text())
    for fig in rec["figures"]:
        assert (tmp_path / fig).read_bytes() == (out / fig).read_bytes(), fig


def test_end_to_end_second_run_is_all_cached(fast_run, monkeypatch, tmp_path):
    """A second reproduce over the session's records reruns nothing (in a copy of the folder: the xdist
    workers share the original and read it meanwhile)."""
    import shutil

    skip_if_source_changed(fast_run)
    out = shutil.copytree(fast_run["out"], tmp_path / "results")
    monkeypatch.setattr(registry, "run", lambda *a, **k: pytest.fail(f"reran {a} although cached"))
    res = reproduce.reproduce(out, fast=True, progress=False)
    assert res["cached"] == list(registry.all_claims()) and not res["ran"]


# --------------------------------------------------------------------------------------- no pickles
def test_no_np_load_with_allow_pickle():
    """Loading arrays never runs pickled code: no call anywhere passes ``allow_pickle`` other than False."""
    import ast

    root = Path(__file__).resolve().parent.parent
    bad = []
    for folder in ("toyllora", "figures", "notebooks", "tests"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call):
                    for kw in node.keywords:
                        if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant)
                                                             and kw.value.value is False):
                            bad.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not bad, f"allow_pickle must stay False: {bad}"


def test_jobs_run_a_wall_clock_claim_alone_after_the_workers(fakes, monkeypatch, tmp_path):
    """With ``--jobs 2``, a claim with ``WALL_CLOCK = True`` (a timing) never goes to the pool: it runs in this
    process once the workers are done; the other claims go to the pool. With one process, nothing changes."""
    claims, _ = fakes
    timed = "zeroinit.fake-two"
    claims[timed].module.WALL_CLOCK = True
    events = []

    def pool(out_dir, todo, seeds, fast, jobs, bar):   # stands in for the worker processes
        events.append(("pool", sorted(todo)))
        for cid in todo:
            registry.run(cid, seeds=seeds, fast=fast, out_dir=out_dir, progress=False)
        bar.update(len(todo))
        return {cid: None for cid in todo}, None

    run = registry.run
    monkeypatch.setattr(reproduce, "_run_parallel", pool)
    monkeypatch.setattr(registry, "run", lambda cid, **kw: (events.append(("run", cid)), run(cid, **kw))[1])
    res = reproduce.reproduce(tmp_path, fast=True, progress=False, jobs=2)
    assert sorted(res["ran"]) == sorted(claims) and not res["failed"]
    others = sorted(c for c in claims if c != timed)
    assert events[0] == ("pool", others) and events[-1] == ("run", timed)
    assert [c.id for c in claims.values() if c.wall_clock] == [timed]
    events.clear()
    reproduce.reproduce(tmp_path, fast=True, progress=False, force=True)   # one process: the registry's order
    assert [e for e in events if e[0] == "pool"] == [] and [c for _, c in events] == list(claims)


def test_end_to_end_jobs_run_claims_in_worker_processes_with_the_same_records(fast_run, tmp_path):
    """``--jobs 2``: two claims of two folders, each in a worker process, give the records of the session's
    one-process run (but timing) and their figures; REPORT.md and the timing file are written once."""
    skip_if_source_changed(fast_run)
    ids = ["ripple.bound", "zeroinit.unfair-regularization"]
    res = reproduce.reproduce(tmp_path, fast=True, only=ids, progress=False, jobs=2)
    assert sorted(res["ran"]) == sorted(ids) and not res["failed"] and res["jobs"] == 2
    for cid in ids:
        assert without_timing((tmp_path / f"{cid}.json").read_text()) == \
            without_timing((fast_run["out"] / f"{cid}.json").read_text()), cid
    assert (tmp_path / "REPORT.md").is_file() and (tmp_path / reproduce.TIMING_FILE).is_file()
    assert reproduce.folder_groups(ids + ["ripple.coupling"], {"ripple.bound": 1.0}) == \
        [["ripple.bound", "ripple.coupling"], ["zeroinit.unfair-regularization"]]
    with pytest.raises(ValueError, match="jobs"):
        reproduce.reproduce(tmp_path, fast=True, only=ids, jobs=0)


def test_jobs_auto_is_the_cli_default_one_per_core_on_cpu_and_one_on_an_accelerator(monkeypatch):
    """``--jobs`` defaults to ``auto``: the cores this process may use on a CPU backend, 1 on an accelerator
    (each worker process would claim the device's memory)."""
    import jax

    from toyllora.harness import cli

    assert cli.build_parser().parse_args(["reproduce"]).jobs == "auto"
    monkeypatch.setattr(reproduce.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert reproduce.check_jobs("auto") == reproduce.default_jobs() == 3
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert reproduce.check_jobs("auto") == 1
    with pytest.raises(ValueError, match="jobs"):
        reproduce.check_jobs("several")


def test_the_pool_joins_a_claims_master_seeds_in_seed_order_and_reports_a_failed_seed(fakes, tmp_path):
    """Seeds measured by different tasks, in any order, give the record of one process; a claim that fails at
    one master seed fails (nothing written), whatever its other seeds measured."""
    claims, behaviour = fakes
    cid, other = list(claims)[:2]
    reproduce.reproduce(tmp_path / "one", fast=True, seeds=(0, 1, 2), only=[cid], progress=False)
    joiner = reproduce._Joiner(tmp_path / "pool", [cid, other], (0, 1, 2), True)
    parts = {s: registry.measure_seeds(cid, [s], True, tmp_path / "pool") for s in (0, 1, 2)}
    assert [joiner.add(cid, (s,), parts[s]) for s in (2, 0, 1)] == [False, False, True]
    assert joiner.results == {cid: None}
    assert without_timing((tmp_path / "pool" / f"{cid}.json").read_text()) == \
        without_timing((tmp_path / "one" / f"{cid}.json").read_text())
    assert joiner.add(other, (0,), registry.measure_seeds(other, [0], True)) is False
    failure = {"flaw": "zeroinit", "error": "RuntimeError: boom", "traceback": ""}
    assert joiner.add(other, (1,), failure) is True and joiner.results[other] == failure
    assert joiner.add(other, (2,), registry.measure_seeds(other, [2], True)) is False
    assert not (tmp_path / "pool" / f"{other}.json").exists()


def test_worker_tasks_spread_the_master_seeds_of_a_folder_heaviest_first():
    """One task per folder and master seed, by the per-seed weight of an earlier run (its seconds over its
    master seeds); a folder with a claim that measures its seeds together stays one task."""
    from types import SimpleNamespace as NS

    claims = {c: NS(module=NS()) for c in ("a.x", "a.y", "b.z")}
    tasks = reproduce.worker_tasks(list(claims), (0, 1, 2), claims, {"a.x": 30.0, "a.y": 0.0, "b.z": 60.0},
                                     weight_seeds=3)
    assert tasks[:3] == [(["b.z"], (0,)), (["b.z"], (1,)), (["b.z"], (2,))]
    assert tasks[3:] == [(["a.x", "a.y"], (s,)) for s in (0, 1, 2)]
    claims["a.y"].module.measure_many = lambda p, seeds: []
    assert (["a.x", "a.y"], (0, 1, 2)) in reproduce.worker_tasks(list(claims), (0, 1, 2), claims)


def test_a_new_folder_orders_its_tasks_by_the_shipped_seconds_and_its_own_timing_file_once_of_its_mode(tmp_path):
    """A results folder without a timing file of the run's mode orders the pool by the seconds shipped with
    toyllora (which name registered claims only): the transfer rung, the heaviest folder of a full run, comes
    first, where by claim counts it came third. A timing file of the other mode is not used; one of the same
    mode is."""
    claims = registry.all_claims()
    shipped = json.loads(reproduce.HINTS_FILE.read_text())
    for mode in ("full", "fast"):
        assert set(shipped[mode]) <= set(claims) and all(v >= 0 for v in shipped[mode].values())
    w, n = reproduce.task_weights(tmp_path, fast=False)
    assert w == shipped["full"] and n == 1
    first = reproduce.worker_tasks(list(claims), (0, 1), claims, w, n)[0][0]
    assert {parse_id(c)[0] for c in first} == {"transfer"}
    assert reproduce.folder_groups(list(claims))[0][0].startswith("allora.")    # by claim counts
    io.write_json(tmp_path / reproduce.TIMING_FILE, {"fast": True, "master_seeds": [0], "claim_seconds": {"a.x": 1}})
    assert reproduce.task_weights(tmp_path, fast=False)[0] == shipped["full"]
    assert reproduce.task_weights(tmp_path, fast=True) == ({"a.x": 1}, 1)


def test_a_free_worker_starts_no_second_seed_of_a_folder_still_compiling_its_first():
    """Two workers on a full run's tasks, each task starting when a worker comes free: a claim folder's
    later master seeds start only once one of its tasks has finished (its programs are then in the compile
    cache), unless nothing else is left; every task starts once, and the heaviest folder first."""
    claims = registry.all_claims()
    tasks = reproduce.worker_tasks(list(claims), (0, 1, 2, 3, 4), claims, *reproduce.task_weights("/none", False))
    pending, running, finished, order = list(tasks), [], set(), []
    while pending or running:
        while len(running) < 2 and pending:
            cold = {parse_id(g[0])[0] for g, _ in running} - finished
            task = pending.pop(reproduce.next_task(pending, cold))
            alternatives = [t for t in pending if parse_id(t[0][0])[0] not in cold]
            assert parse_id(task[0][0])[0] not in cold or not alternatives, (task, cold)
            running.append(task), order.append(task)
        done = running.pop(0)                      # the older task finishes first
        finished.add(parse_id(done[0][0])[0])
    assert sorted(order, key=str) == sorted(tasks, key=str) and order[0] == tasks[0]
    assert parse_id(order[1][0][0])[0] != parse_id(order[0][0][0])[0]    # not the first folder's seed 1
    assert reproduce.next_task([(["a.x"], (1,)), (["b.y"], (0,))], cold_running=set()) == 0


def test_end_to_end_jobs_split_the_master_seeds_over_workers_with_the_same_records(tmp_path, monkeypatch):
    """``--jobs 2`` on one claim folder and two master seeds: each seed in a worker process, the records
    (but timing) and figures are those of one process, and the workers draw the figures (this process
    draws none)."""
    ids = ["ripple.bound", "ripple.normalization"]
    reproduce.reproduce(tmp_path / "one", fast=True, seeds=(0, 1), only=ids, progress=False, jobs=1)

    def not_here(*args, **kwargs):
        raise AssertionError("this process drew a figure; the pool's workers should")

    monkeypatch.setattr(registry, "draw", not_here)
    res = reproduce.reproduce(tmp_path / "two", fast=True, seeds=(0, 1), only=ids, progress=False, jobs=2)
    assert sorted(res["ran"]) == sorted(ids) and not res["failed"]
    for cid in ids:
        assert without_timing((tmp_path / "two" / f"{cid}.json").read_text()) == \
            without_timing((tmp_path / "one" / f"{cid}.json").read_text()), cid
        rec = json.loads((tmp_path / "two" / f"{cid}.json").read_text())
        assert list(rec["verdicts_by_seed"]) == ["0", "1"]
        assert all((tmp_path / "two" / f).exists() for f in rec["figures"])
    assert not io.stale_temps(tmp_path / "two")


def test_one_process_releases_each_folders_caches_when_the_next_folder_starts(fakes, monkeypatch, tmp_path):
    """``--jobs 1`` does what a worker does between claim folders (one process holding every folder's compiled
    programs died in the transfer rung of a full run: LLVM "Unable to allocate section memory"), with the
    claims of a folder kept together; the records are those of a run that releases nothing."""
    claims, _ = fakes
    released, events = [], []
    run = registry.run
    monkeypatch.setattr(reproduce, "release_folder_caches", released.append)
    monkeypatch.setattr(registry, "run", lambda cid, **kw: (events.append(cid), run(cid, **kw))[1])
    reproduce.reproduce(tmp_path / "a", fast=True, progress=False, jobs=1)
    assert events == list(claims) and released == ["dropout", "zeroinit"]
    released.clear(), events.clear()
    only = ["dropout.fake-one", "ripple.fake-three", "zeroinit.fake-two"]
    reproduce.reproduce(tmp_path / "b", fast=True, progress=False, jobs=1, only=only)
    assert events == only and released == ["dropout", "ripple"]
    for cid in claims:
        assert without_timing((tmp_path / "a" / f"{cid}.json").read_text()) == \
            without_timing((tmp_path / "b" / f"{cid}.json").read_text())


def test_a_worker_releases_the_caches_of_a_folder_it_has_finished(monkeypatch):
    """Moving to another claim folder, a worker clears the finished folder's in-process run caches (every
    ``cache_clear`` in ``toyllora.claims.<folder>.*``) and leaves other folders' alone."""
    import functools
    import sys
    import types

    def cached_module(name):
        module = types.ModuleType(name)
        module.runs = functools.lru_cache(maxsize=None)(lambda x: [x])
        module.runs(1)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    done, other = cached_module("toyllora.claims.fakedone._common"), cached_module("toyllora.claims.fakeother")
    reproduce.release_folder_caches("fakedone")
    assert done.runs.cache_info().currsize == 0 and other.runs.cache_info().currsize == 1
    peak = reproduce.peak_memory_mb()
    assert peak is None or peak > 0
