"""The ``toyllora`` command line: list, run, reproduce, figures, bench.

Bad input prints one line on stderr and exits with status 2; no traceback, no partial output file.

Example::

    toyllora list
    toyllora run zeroinit.gradient-asymmetry --fast --out results
    toyllora reproduce --fast
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SystemExit(_fail(f"{self.prog}: error: {message}"))


def _fail(msg: str) -> int:
    print(msg.splitlines()[0] if msg else "toyllora: error", file=sys.stderr)
    return 2


def _seed(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, got {text!r}")
    if v < 0:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="toyllora", description="Put the ALLoRA paper's claims to a measured test on toy models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("list", help="list the registered claims")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s = sub.add_parser("run", help="run one claim and write DIR/ID.json")
    s.add_argument("claim_id")
    s.add_argument("--fast", action="store_true", help="small grids and seeds (seconds, for smoke tests)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", type=Path, default=Path("results"))
    s = sub.add_parser("reproduce", help="run every claim, its figures and REPORT.md")
    s.add_argument("--fast", action="store_true")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", type=Path, default=Path("results"))
    s.add_argument("--force", action="store_true", help="rerun claims whose cached result is current")
    s = sub.add_parser("figures", help="run the figure scripts in figures/")
    s.add_argument("--fast", action="store_true")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--only", default=None, help="run only this figure script")
    s.add_argument("--out", type=Path, default=Path("results/figures"))
    s = sub.add_parser("bench", help="measure the engine and ALLoRA; print a table, write JSON")
    s.add_argument("--out", type=Path, default=Path("results/bench.json"))
    s.add_argument("--fast", action="store_true", help="fewer repetitions and sizes")
    return p


def _cmd_list(args):
    from toyllora import registry

    claims = registry.all_claims()
    if args.json:
        print(json.dumps([{"id": c.id, "statement": c.statement, "source": c.source, "flaw": c.flaw,
                           "rule": c.rule} for c in claims.values()], indent=1))
        return 0
    width = max(len(i) for i in claims)
    for c in claims.values():
        print(f"{c.id:<{width}}  {c.source:<9}  {c.statement}")
    return 0


def _cmd_run(args):
    from toyllora import registry

    registry.get(args.claim_id)  # validate before any work
    rec = registry.run(args.claim_id, seed=args.seed, fast=args.fast, out_dir=args.out)
    print(f"{rec['id']}: {rec['verdict']} ({rec['seconds']:.1f} s) -> {args.out / (rec['id'] + '.json')}")
    return 0


def _cmd_reproduce(args):
    from toyllora import reproduce

    reproduce.reproduce(args.out, fast=args.fast, seed=args.seed, force=args.force)
    return 0


def _cmd_figures(args):
    from toyllora import figures

    figures.run_all(args.out, seed=args.seed, fast=args.fast, only=args.only)
    return 0


def _cmd_bench(args):
    from toyllora import bench

    bench.main(args.out, fast=args.fast)
    return 0


COMMANDS = {"list": _cmd_list, "run": _cmd_run, "reproduce": _cmd_reproduce, "figures": _cmd_figures,
            "bench": _cmd_bench}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else _fail(str(e.code))
    except ValueError as e:
        return _fail(f"toyllora: error: {e}")
    except KeyboardInterrupt:
        return _fail("toyllora: interrupted; finished results are kept")


if __name__ == "__main__":
    sys.exit(main())
