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
    for t in tests:
        runner.run(t, out=lambda s: None)
    result = runner.summarize(verbose=False)
    if result.failed:
        report = []
        for t in tests:  # rerun to collect the failing examples' text
            r = doctest.DocTestRunner(optionflags=runner.optionflags)
            buf = []
            r.run(t, out=buf.append)
            if r.failures:
                report.append("".join(buf))
        pytest.fail(f"{result.failed} of {result.attempted} examples failed in {name}:\n" + "\n".join(report)[:6000])
