"""The derivations in ``proofs/``: each names a registered claim, every test it cites exists, every step
section names a test, and the index ``proofs/README.md`` lists them all."""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

from toyllora.harness import registry, report

ROOT = Path(__file__).resolve().parent.parent
PROOFS = ROOT / "proofs"
REF = re.compile(r"^(tests/[A-Za-z0-9_/]+\.py)::([A-Za-z_][A-Za-z0-9_]*)(?:::([A-Za-z_][A-Za-z0-9_]*))?"
                 r"(?:\[[^\]]*\])?$")
STEP_HEADING = re.compile(r"^#{2,4} .*\bstep\b", re.I | re.M)


def proof_files():
    return sorted(p for p in PROOFS.glob("*.md") if p.name != "README.md")


@lru_cache(maxsize=None)
def defined_names(path: Path) -> frozenset:
    """``name`` and ``Class::name`` for every function (any depth of classes) defined in a test file, and
    module-level names bound by assignment (tests made by a factory)."""
    tree = ast.parse(path.read_text())
    names = set()

    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(prefix + node.name)
            elif isinstance(node, ast.ClassDef):
                walk(node.body, f"{prefix}{node.name}::")
            elif isinstance(node, ast.Assign) and not prefix:
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))

    walk(tree.body, "")
    return frozenset(names)


def missing_tests(refs: list[str], root: Path = ROOT) -> list[str]:
    """The references ``tests/file.py::test[::method][param]`` that do not name an existing test."""
    bad = []
    for ref in refs:
        m = REF.match(ref)
        if not m or not (root / m.group(1)).is_file():
            bad.append(ref)
            continue
        name = m.group(2) + (f"::{m.group(3)}" if m.group(3) else "")
        if name not in defined_names(root / m.group(1)):
            bad.append(ref)
    return bad


def test_reference_checker_finds_functions_methods_and_parametrized_tests(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "import pytest\n@pytest.mark.parametrize('a', [1])\ndef test_a(a): pass\n"
        "class TestB:\n    def test_m(self): pass\n")
    ok = ["tests/test_x.py::test_a", "tests/test_x.py::test_a[1]", "tests/test_x.py::TestB::test_m"]
    bad = ["tests/test_x.py::test_nope", "tests/test_y.py::test_a", "tests/test_x.py::test_m",
           "tests/test_x.py", "test_x.py::test_a"]
    assert missing_tests(ok, tmp_path) == []
    assert missing_tests(bad, tmp_path) == bad


@pytest.mark.parametrize("path", proof_files(), ids=lambda p: p.name)
def test_proof_names_a_registered_claim(path):
    info = report.proof_info(path)
    assert info["claims"], f"{path.name}: needs a line 'Claim: <claim id>' at the top"
    unknown = [c for c in info["claims"] if c not in registry.all_claims()]
    assert not unknown, f"{path.name}: claims not registered: {unknown}"


@pytest.mark.parametrize("path", proof_files(), ids=lambda p: p.name)
def test_every_test_a_proof_names_exists(path):
    info = report.proof_info(path)
    assert info["tests"], f"{path.name}: no 'Checked by: tests/<file>.py::<test>' line"
    assert not missing_tests(info["tests"]), f"{path.name}: no such tests: {missing_tests(info['tests'])}"


@pytest.mark.parametrize("path", proof_files(), ids=lambda p: p.name)
def test_every_step_section_names_its_test(path):
    text = path.read_text()
    starts = [m.start() for m in STEP_HEADING.finditer(text)]
    for i, s in enumerate(starts):
        nxt = re.compile(r"^#{1,4} ", re.M).search(text, s + 1)
        section = text[s:nxt.start() if nxt else len(text)]
        heading = section.splitlines()[0]
        assert report.CHECKED_BY.search(section), f"{path.name}: section {heading!r} has no 'Checked by:' line"


def test_index_lists_every_derivation():
    index = (PROOFS / "README.md").read_text()
    links = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    listed = {p.name for p in proof_files()}
    assert listed <= links, f"missing from proofs/README.md (run `toyllora docs`): {sorted(listed - links)}"
    assert all((PROOFS / link).exists() for link in links if "/" not in link), "index links a missing file"
    for p in proof_files():
        row = next(ln for ln in index.splitlines() if f"]({p.name})" in ln)
        assert all(f"`{c}`" in row for c in report.proof_info(p)["claims"]), f"{p.name}: claim not in index row"


def test_every_claim_is_covered_by_a_proof_or_a_notebook():
    """The issue's "must hold": each registered claim is derived in proofs/ or taught in a notebook (its id
    named in a proof's ``Claim:`` line or in a notebook's text)."""
    in_proofs = {c for p in proof_files() for c in report.proof_info(p)["claims"]}
    notebooks = " ".join(p.read_text() for p in (ROOT / "notebooks").glob("*.py"))
    uncovered = [c for c in registry.all_claims() if c not in in_proofs and c not in notebooks]
    assert not uncovered, f"claims in no proof and no notebook: {uncovered}"
