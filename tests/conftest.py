"""Shared test settings: a hypothesis profile for JAX (no deadline: the first call compiles), and the one
``toyllora reproduce --fast`` of every registered claim that the end-to-end, contract and figure tests read."""

import os
import sys
import time
from pathlib import Path

# Compile once per machine: every process of the suite (this one, the notebook kernels, the subprocess tests)
# shares JAX's persistent compilation cache under build/ (ignored by git); TOYLLORA_COMPILE_CACHE=off disables it.
os.environ.setdefault("TOYLLORA_COMPILE_CACHE", str(Path(__file__).resolve().parent.parent / "build" / "jax-cache"))
# The suite's programs compile for seconds and run for milliseconds: they compile with most of XLA's
# optimizations off, as the fast smoke test does (a clean clone's cold suite: float64 pass 253 s -> 188 s on 2
# cores). The claims of the session's fast reproduce still compile as `toyllora reproduce --fast` does
# (registry.compiler_for sets the flag per claim), and test_reproduce checks that both settings compute the same.
# JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs the suite optimized.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# TOYLLORA_ONLY="allora.,ripple.bound" (id prefixes, comma-separated): a developer's shortcut that runs the
# fast reproduce for those claims only and deselects the per-claim and end-to-end tests of the others.
ONLY = tuple(p.strip() for p in os.environ.get("TOYLLORA_ONLY", "").split(",") if p.strip())


def selected(claim_id: str) -> bool:
    """Whether TOYLLORA_ONLY (unset: every claim) selects this claim."""
    return not ONLY or claim_id.startswith(ONLY)


def _uses_fast_run(item) -> bool:
    return "fast_run" in getattr(item, "fixturenames", ())


# The tests that .ci/run's float64 pass (JAX_ENABLE_X64=1) deselects with -m "not one_dtype": every one that
# reads the session's fast reproduce (whole claims end to end: the records are made in float32, the dtype of
# `toyllora reproduce`), the notebooks (the same claims' code, for teaching), and the harness tests that compute
# nothing in floating point (command line, README, proofs, figure scripts, caching and atomic writes, the
# stability table). Every numerical test -- closed forms against simulation, engines, models, statistics,
# doctests -- runs in both passes.
ONE_DTYPE_FILES = {"test_notebooks.py", "test_cli.py", "test_readme.py", "test_proofs.py", "test_figures.py",
                   "test_claims_contract.py", "test_reproduce.py", "test_stability.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _uses_fast_run(item) or item.path.name in ONE_DTYPE_FILES:
            item.add_marker(pytest.mark.one_dtype)
    # the tests that read the session's fast reproduce last (a stable sort, the same order in every xdist
    # worker): while the first worker runs it (see `_start_fast_run`), the others run everything else
    items.sort(key=_uses_fast_run)
    if not ONLY:
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        cid = params.get("claim_id", params.get("claim"))
        end_to_end = item.name.startswith("test_end_to_end")
        (drop if end_to_end or (cid is not None and not selected(str(cid))) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _xla_optimized(request):
    """A test marked ``xla_optimized`` (execution-bound: long scans, where an unoptimized program runs several
    times slower than it compiles faster) compiles with XLA's optimizations; the others as the suite does."""
    if request.node.get_closest_marker("xla_optimized") is None:
        yield
        return
    from toyllora.harness import registry

    with registry.xla_optimizations(True):
        yield


OUTSIDE_OK = ("/dev/", "__pycache__", os.environ["TOYLLORA_COMPILE_CACHE"])
WRITE_EVENTS = {"open", "os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.chmod"}
DIR_FD_ARG = {"os.rename": 2, "os.mkdir": 2, "os.remove": 1, "os.rmdir": 1, "os.chmod": 2}


def _fast_reproduce(out: Path) -> dict:
    """``toyllora reproduce --fast`` into ``out`` in-process, with an audit hook recording every path opened
    for writing, created, renamed or removed (to check nothing is written outside the folder)."""
    from toyllora.harness import cli, io

    written, active = [], [True]

    def hook(event, args):  # must never raise: an exception here would break the audited call
        if not active[0] or event not in WRITE_EVENTS:
            return
        try:
            if event == "open":
                if isinstance(args[0], (str, bytes, os.PathLike)) and isinstance(args[2], int) and \
                        args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
                    written.append(os.fsdecode(args[0]))
            elif not (event in DIR_FD_ARG and args[DIR_FD_ARG[event]] not in (None, -1)):  # rmtree, by dir_fd
                paths = args[:2] if event == "os.rename" else args[:1]
                written.extend(os.fsdecode(p) for p in paths if isinstance(p, (str, bytes, os.PathLike)))
        except Exception:  # noqa: BLE001
            written.append(f"<unreadable {event} event>")

    sys.addaudithook(hook)
    code = io.code_hash()
    t0 = time.perf_counter()
    only = []
    if ONLY:
        from toyllora.harness import registry
        only = [cid for cid in registry.all_claims() if selected(cid)]
    try:
        # --jobs 1: every write happens in this process, where the audit hook sees it (pytest-xdist has the cores)
        rc = cli.main(["reproduce", "--fast", "--jobs", "1", "--out", str(out)] +
                      [a for cid in only for a in ("--only", cid)])
    finally:
        active[0] = False
    return {"out": out, "rc": rc, "seconds": time.perf_counter() - t0, "written": written, "code": code}


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory):
    """``toyllora reproduce --fast`` of every (selected) claim, once per pytest session, audited
    (:func:`_fast_reproduce`).

    Under pytest-xdist the first worker to ask runs it, holding a lock in the session's shared temp folder,
    and writes its result (the audit's list of written paths included) beside the output; the other workers
    wait for the lock and read that result (pytest-xdist's "session-scoped fixtures executed only once").
    Returns ``{"out", "rc", "seconds", "written", "code"}``; every claim's fast record is ``out/<id>.json``.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process: nothing to share
        return _fast_reproduce(tmp_path_factory.mktemp("reproduce") / "results")
    import json

    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent   # this session's folder, common to all its workers
    result = shared / "fast_run.json"
    with FileLock(str(shared / "fast_run.lock")):
        if result.is_file():
            run = json.loads(result.read_text())
            return dict(run, out=Path(run["out"]))
        (shared / "reproduce").mkdir(exist_ok=True)   # before the audit: only the output folder is written
        run = _fast_reproduce(shared / "reproduce" / "results")
        tmp = result.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(run, out=str(run["out"]))))
        tmp.replace(result)
        return run


@pytest.fixture(scope="session", autouse=True)
def _start_fast_run(request):
    """Under pytest-xdist, worker gw0 runs the session's fast reproduce before its first test (if any test of
    the session reads it), so that it is ready, or nearly, when the other workers reach those tests."""
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw0" and any(_uses_fast_run(i) for i in request.session.items):
        try:
            request.getfixturevalue("fast_run")
        except Exception:  # noqa: BLE001 -- the tests that read it report the error; the others run on
            pass
