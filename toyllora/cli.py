"""The ``toyllora`` command line: list, run, reproduce, figures, bench.

Bad input prints one line on stderr and exits with status 2; no traceback, no partial output file.

Example::

    toyllora list
    toyllora run zeroinit.gradient-asymmetry --fast --out results
    toyllora reproduce --fast
    toyllora figures --fast --only zeroinit_gradient_asymmetry
    toyllora docs --results results          # README ledger, key figures, proofs/README.md
"""

from __future__ import annotations

import argparse
import json
import sys
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
    s = sub.add_parser("docs", help="rewrite the README ledger and figure sections and proofs/README.md")
    s.add_argument("--results", type=Path, default=Path("results"),
                   help="folder of a reproduce run whose records fill the ledger")
    s.add_argument("--readme", type=Path, default=None, help="README to rewrite (default: the repository's)")
    s.add_argument("--proofs", type=Path, default=None, help="proofs folder (default: the repository's)")
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

    from toyllora.reproduce import check_out_dir

    registry.get(args.claim_id)  # validate before any work
    check_out_dir(args.out)
    rec = registry.run(args.claim_id, seed=args.seed, fast=args.fast, out_dir=args.out)
    print(f"{rec['id']}: {rec['verdict']} ({rec['seconds']:.1f} s) -> {args.out / (rec['id'] + '.json')}")
    return 0


def _cmd_reproduce(args):
    from toyllora import reproduce

    res = reproduce.reproduce(args.out, fast=args.fast, seed=args.seed, force=args.force)
    print(f"{len(res['ran'])} claims run, {len(res['cached'])} cached, {len(res['failed'])} failed "
          f"in {res['seconds']:.1f} s -> {args.out / 'REPORT.md'}")
    if res["failed"]:
        print(f"toyllora: error: claims failed: {', '.join(res['failed'])} (see REPORT.md)", file=sys.stderr)
        return 1
    return 0


def _cmd_figures(args):
    from toyllora import figures

    from toyllora.reproduce import check_out_dir

    if args.only is not None:
        figures.check_name(args.only)
    check_out_dir(args.out)
    done = figures.run_all(args.out, seed=args.seed, fast=args.fast, only=args.only)
    for name, paths in done.items():
        print(f"{name}: {paths['png']} ({paths['seconds']:.1f} s)")
    return 0


def _cmd_docs(args):
    from toyllora import docs

    for path in docs.write_docs(args.results, readme=args.readme, proofs=args.proofs):
        print(f"wrote {path}")
    return 0


def _cmd_bench(args):
    try:
        from toyllora import bench
    except ModuleNotFoundError as e:
        if e.name != "toyllora.bench":
            raise
        raise ValueError("bench: toyllora.bench is not in this checkout") from None
    if args.out.suffix != ".json" or args.out.is_dir():
        raise ValueError(f"out: the bench result is a .json file path, got {str(args.out)!r}")
    bench.main(args.out, fast=args.fast)
    return 0


COMMANDS = {"list": _cmd_list, "run": _cmd_run, "reproduce": _cmd_reproduce, "figures": _cmd_figures,
            "docs": _cmd_docs, "bench": _cmd_bench}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else _fail(str(e.code))
    except ValueError as e:
        return _fail(f"toyllora: error: {e}")
    except OSError as e:  # e.g. an output folder that cannot be created
        return _fail(f"toyllora: error: {e}")
    except KeyboardInterrupt:
        return _fail("toyllora: interrupted; finished results are kept")


if __name__ == "__main__":
    sys.exit(main())
