"""Every docstring example in the package runs (``>>>`` lines), in both dtype modes.

A module's examples are its runnable documentation; this test keeps them true. Examples that need
something the suite does not have are marked ``# doctest: +SKIP`` in place.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import toyllora


def has_examples(name: str) -> bool:
    return any(t.examples for t in doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(name), name))


def package_modules() -> list[str]:
    """Every module of the package that has docstring examples."""
    names = [toyllora.__name__] + [i.name for i in pkgutil.walk_packages(toyllora.__path__, prefix="toyllora.")]
    return sorted(n for n in names if has_examples(n))


@pytest.mark.parametrize("name", package_modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    failed, attempted, report = 0, 0, []
    for t in tests:
        buf = []
        r = runner.run(t, out=buf.append)
        failed, attempted = failed + r.failed, attempted + r.attempted
        if r.failed:
            report.append("".join(buf))
    if failed:
        pytest.fail(f"{failed} of {attempted} examples failed in {name}:\n" + "\n".join(report)[:6000])
