"""The ``toyllora`` command line: list, where, run, reproduce, figures, docs, stability, bench, pretrain.

Bad input prints one line on stderr and exits with status 2; no traceback, no partial output file.

Example::

    toyllora list
    toyllora where zeroinit.hessian                       # its file, proofs, tests, figure, notebook
    toyllora run zeroinit.gradient-asymmetry --fast --out results
    toyllora reproduce --fast                             # the smoke test (one master seed)
    toyllora reproduce                                    # the record (master seeds 0-4)
    toyllora figures --only zeroinit.hessian              # drawn from the record in results/
    toyllora docs --results results                       # README ledger, key figures, proofs/README.md
    toyllora stability --results results --against r5-7   # do stable labels hold at other master seeds?
    toyllora pretrain --fast --out results                # the base transformer, cached as results/*.npz
    toyllora bench --against peft                         # engine vs PyTorch + PEFT, results/bench.json
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


def _seeds(text):
    try:
        vals = tuple(int(s) for s in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0 separated by commas, got {text!r}")
    if any(v < 0 for v in vals) or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"seeds must be distinct integers >= 0, got {text!r}")
    return vals


def _jobs(text):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"jobs must be an integer >= 1 or 'auto', got {text!r}")


def _add_seeds(s):
    g = s.add_mutually_exclusive_group()
    g.add_argument("--seeds", type=_seeds, default=None,
                   help="master seeds, e.g. 0,1,2,3,4 (default: 0-4 for the full run, 0 with --fast)")
    g.add_argument("--seed", type=_seeds, default=None, dest="seeds", help="one master seed (same as --seeds N)")


def _add_cache(s):
    s.add_argument("--no-compile-cache", action="store_true",
                   help="do not store/reuse compiled programs in OUT/.compile-cache (see toyllora.compile_cache)")


def _compile_cache(args, out_dir):
    from toyllora import compile_cache

    compile_cache.for_results(out_dir, use=not args.no_compile_cache)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="toyllora", description="Put the ALLoRA paper's claims to a measured test on toy models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("list", help="list the registered claims")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s = sub.add_parser("where", help="a claim's file, proofs, tests, figure script and notebook section")
    s.add_argument("claim_id")
    s = sub.add_parser("run", help="run one claim and write DIR/ID.json and its figure")
    s.add_argument("claim_id")
    s.add_argument("--fast", action="store_true", help="the smoke test: small setups, one master seed")
    _add_seeds(s)
    s.add_argument("--out", type=Path, default=Path("results"))
    _add_cache(s)
    s = sub.add_parser("reproduce", help="run every claim, its figure and REPORT.md")
    s.add_argument("--fast", action="store_true", help="the smoke test: small setups, one master seed")
    _add_seeds(s)
    s.add_argument("--out", type=Path, default=Path("results"))
    s.add_argument("--force", action="store_true", help="rerun claims whose cached result is current")
    s.add_argument("--jobs", type=_jobs, default="auto", metavar="N",
                   help="worker processes, a claim folder each at a time (default auto: one per CPU core "
                        "on a CPU backend, 1 = this process on an accelerator)")
    s.add_argument("--only", action="append", default=None, metavar="ID",
                   help="only this claim (repeat for several); REPORT.md then covers those claims")
    _add_cache(s)
    s = sub.add_parser("figures", help="draw each claim's figure from its record (running it if needed)")
    s.add_argument("--fast", action="store_true")
    _add_seeds(s)
    s.add_argument("--only", default=None, metavar="ID", help="only this claim")
    s.add_argument("--results", type=Path, default=Path("results"), help="folder of the records")
    s.add_argument("--out", type=Path, default=None, help="where the figures go (default: RESULTS/figures)")
    _add_cache(s)
    s = sub.add_parser("docs", help="rewrite the README ledger and figure sections and proofs/README.md")
    s.add_argument("--results", type=Path, default=Path("results"),
                   help="folder of a full reproduce run whose records fill the ledger")
    s.add_argument("--readme", type=Path, default=None, help="README to rewrite (default: the repository's)")
    s.add_argument("--proofs", type=Path, default=None, help="proofs folder (default: the repository's)")
    s.add_argument("--allow-stale", action="store_true",
                   help="write the ledger even from records the current code would rerun (marked stale)")
    s = sub.add_parser("stability", help="do the stable verdicts of a run hold at other master seeds?")
    s.add_argument("--results", type=Path, default=Path("results"), help="folder of the run whose labels are checked")
    s.add_argument("--against", type=Path, required=True,
                   help="folder of a run of the same claims at other master seeds (reproduce --seeds 5,6,7)")
    s = sub.add_parser("bench", help="measure the engine and ALLoRA; print a table, write JSON")
    s.add_argument("--out", type=Path, default=Path("results/bench.json"))
    s.add_argument("--fast", action="store_true", help="fewer repetitions and sizes")
    s.add_argument("--against", choices=("peft",), default=None,
                   help="also time PyTorch + PEFT (eager; torch.compile in full mode) in the same run; "
                        "needs toyllora[peft], else exit 2 with one line saying how to install it")
    _add_cache(s)
    s = sub.add_parser("pretrain", help="pre-train the transfer rung's base transformer once (cached as DIR/transformer*.npz)")
    s.add_argument("--fast", action="store_true", help="the small model and budget (about 20 s)")
    s.add_argument("--out", type=Path, default=Path("results"), help="results folder holding the .npz")
    s.add_argument("--force", action="store_true", help="pre-train even when the cached file is current")
    _add_cache(s)
    return p


def _cmd_list(args):
    from toyllora.harness import registry

    claims = registry.all_claims()
    if args.json:
        print(json.dumps([{"id": c.id, "statement": c.statement, "source": c.source, "flaw": c.flaw,
                           "rule": c.rule()} for c in claims.values()], indent=1))
        return 0
    width = max(len(i) for i in claims)
    for c in claims.values():
        print(f"{c.id:<{width}}  {c.source:<9}  {c.statement}")
    return 0


def _cmd_where(args):
    from toyllora.harness import where

    print(where.render(args.claim_id))
    return 0


def _cmd_run(args):
    from toyllora.harness import registry
    from toyllora.harness.reproduce import check_out_dir, default_seeds

    registry.get(args.claim_id)  # validate before any work
    check_out_dir(args.out)
    seeds = default_seeds(args.fast) if args.seeds is None else args.seeds
    _compile_cache(args, args.out)
    rec = registry.run(args.claim_id, seeds=seeds, fast=args.fast, out_dir=args.out)
    from toyllora.harness.report import verdict_label

    print(f"{rec['id']}: {verdict_label(rec)} ({rec['seconds']:.1f} s) -> {args.out / (rec['id'] + '.json')}")
    return 0


def _cmd_reproduce(args):
    from toyllora.harness import reproduce

    from toyllora.harness import registry

    for cid in args.only or ():
        registry.get(cid)
    reproduce.check_out_dir(args.out)
    if args.jobs != "auto":   # "auto" is resolved in reproduce(), once the compile cache is set up
        reproduce.check_jobs(args.jobs)
    _compile_cache(args, args.out)
    res = reproduce.reproduce(args.out, fast=args.fast, seeds=args.seeds, force=args.force, only=args.only,
                              jobs=args.jobs)
    print(f"{len(res['ran'])} claims run, {len(res['cached'])} cached, {len(res['failed'])} failed "
          f"in {res['seconds']:.1f} s -> {args.out / 'REPORT.md'}")
    if res["failed"]:
        print(f"toyllora: error: claims failed: {', '.join(res['failed'])} (see REPORT.md)", file=sys.stderr)
        return 1
    return 0


def _cmd_figures(args):
    from toyllora.harness import figures, registry
    from toyllora.harness.reproduce import check_out_dir

    if args.only is not None:
        registry.get(args.only)
    check_out_dir(args.results)
    if args.out is not None:
        check_out_dir(args.out)
    _compile_cache(args, args.results)
    done = figures.run_all(results=args.results, out_dir=args.out, fast=args.fast, seeds=args.seeds,
                           only=args.only)
    for cid, paths in done.items():
        how = "ran the claim" if paths["ran"] else "from its record"
        print(f"{cid}: {paths['png']} ({how}, {paths['seconds']:.1f} s)")
    return 0


def _cmd_docs(args):
    from toyllora.harness import docs

    for path in docs.write_docs(args.results, readme=args.readme, proofs=args.proofs, allow_stale=args.allow_stale):
        print(f"wrote {path}")
    return 0


def _cmd_stability(args):
    from toyllora.harness import stability

    print(stability.table(stability.compare(args.results, args.against)))
    return 0


def _cmd_bench(args):
    from toyllora.harness import bench

    bench.check_out(args.out)
    bench.check_against(args.against)   # before any work: a missing torch / peft is one line, exit 2
    _compile_cache(args, args.out.parent)
    bench.main(args.out, fast=args.fast, against=args.against)
    return 0


def _cmd_pretrain(args):
    from toyllora import pretrain
    from toyllora.claims.transfer import _common as transfer
    from toyllora.harness.reproduce import check_out_dir

    check_out_dir(args.out)
    _compile_cache(args, args.out)
    settings = transfer.PRETRAINING_FAST if args.fast else transfer.PRETRAINING   # the transfer claims' model
    res = pretrain.transformer(settings, out=args.out, force=args.force, progress=True)
    rec = res.record
    how = "cached" if res.cached else f"pre-trained in {rec['seconds']:.1f} s"
    print(f"{res.path} ({how}): {rec['n_params']} parameters; test token accuracy "
          f"{rec['pretrain']['pretrain']['acc']:.3f} on the pre-training mixture, "
          f"{rec['shifted']['shifted']['acc']:.3f} on the shifted one")
    return 0


COMMANDS = {"list": _cmd_list, "where": _cmd_where, "run": _cmd_run, "reproduce": _cmd_reproduce,
            "figures": _cmd_figures, "docs": _cmd_docs, "stability": _cmd_stability, "bench": _cmd_bench,
            "pretrain": _cmd_pretrain}


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
