"""``toyllora bench``: time the engine (and ALLoRA's step), optionally against PyTorch + PEFT in the same run.

What one run measures (every comparison in interleaved rounds, medians with 95 % intervals, see
:mod:`toyllora.harness.bench_timing`):

* the toys (:mod:`toyllora.harness.bench_engine`): the small toy's vmapped sweep and the medium toy's scan,
  per seed-step, next to a Python loop around a jitted step, the same-shape float32 matmul chain and, with
  ``--against peft``, HF PEFT eager and ``torch.compile`` (:mod:`toyllora.harness.bench_torch`);
* one ALLoRA / LoRA / DoRA training step of one layer (:mod:`toyllora.harness.bench_allora`), with the
  torch ``autograd.Function`` of the paper's listing beside it at ``d = 4096, r = 64``;
* one LoRA fine-tuning sweep (lr grid × seeds) of the transfer rung's transformer as one compiled, vmapped
  call: compile time, steps/s and the share of a same-shape matmul's GFLOP/s
  (:mod:`toyllora.harness.bench_transformer`);
* scaling with seeds, width and depth, and the sharded sweep on 1, 2, 4 devices
  (:mod:`toyllora.harness.bench_scale`), as tables and a log–log plot ``<out stem>_scale.png``;
* how far ``reproduce --jobs N`` can go here: a matmul, the transformer sweep and a Python loop, alone and in
  one process per core (:mod:`toyllora.harness.bench_workers`; full mode only);
* on a GPU, the bf16-matmul variants (``jax.default_matmul_precision`` and bf16 inputs).

The aims of issue 15 are checked at the end (reported, never asserted): small toy ≥ 25× PEFT eager per
seed-step, medium toy ≥ 2× PEFT eager and ≥ 80 % of the same-shape matmul's GFLOP/s, ALLoRA's step ≤ 1.05×
LoRA's at ``d = 4096, r = 64`` (full mode only).

Before any timing with ``--against peft``, both engines must compute the same loss and gradients on the same
weights (:func:`toyllora.harness.bench_torch.consistency`), else the bench stops: timings of two different
computations compare nothing. Without torch / peft, ``--against peft`` is a one-line ValueError (exit 2).

Run (full: several minutes with ``--against peft``, torch.compile included; ``--fast``: a smoke run under
half a minute once compiled: no Python-loop candidate, one ALLoRA size, the seeds series only, no sharding,
no torch.compile)::

    toyllora bench --against peft --out results/bench.json
    toyllora bench --fast --out results/bench.json

Example:
    >>> fmt_ci({"median": 1.5, "lo": 1.25, "hi": 2.0})
    '1.50 [1.25, 2.00]'
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from toyllora.harness import (bench_allora, bench_engine, bench_scale, bench_timing, bench_transformer, bench_workers,
                              io)

AGAINST = ("peft",)
AIMS = {  # name: (description, target, "min" = at least / "max" = at most)
    "small_vs_peft_eager": ("small toy: PEFT eager / toyllora vmapped, per seed-step", 25.0, "min"),
    "medium_vs_peft_eager": ("medium toy: PEFT eager / toyllora scan, per step", 2.0, "min"),
    "medium_matmul_share": ("medium toy scan GFLOP/s / same-shape f32 matmul GFLOP/s", 0.80, "min"),
    "allora_over_lora": ("ALLoRA step / LoRA step at d=4096, r=64 (JAX)", 1.05, "max"),
}
F32_PRECISION = "highest"   # jax.default_matmul_precision of the float32 rows on a GPU
REPEATS = {"toys": (9, 3), "allora": (30, 5)}   # (full, fast) interleaved rounds


def fmt_ci(m: dict, scale: float = 1.0, digits: int = 2) -> str:
    """``median [lo, hi]`` of a :func:`toyllora.harness.bench_timing.median_ci` dict."""
    f = f"{{:.{digits}f}}"
    return f"{f.format(scale * m['median'])} [{f.format(scale * m['lo'])}, {f.format(scale * m['hi'])}]"


def _per_round(timed, units, num, den):
    """Median (and interval) over rounds of ``num``'s time per unit over ``den``'s time per unit."""
    a = np.asarray(timed["seconds"][num]) / units[num]
    b = np.asarray(timed["seconds"][den]) / units[den]
    return bench_timing.median_ci(a / b)


def check_against(against) -> None:
    """ValueError (one line) unless ``against`` is None or ``"peft"`` with torch and peft installed."""
    if against is not None and against not in AGAINST:
        raise ValueError(f"against: unknown value {against!r}; allowed: {AGAINST}")
    _torch_setup(against)


def _torch_setup(against):
    """The :mod:`toyllora.harness.bench_torch` module, or None without ``against``; ValueError (the CLI's
    one-line error, exit status 2) when torch or peft is missing."""
    if against is None:
        return None
    from toyllora.harness import bench_torch

    reason = bench_torch.missing()
    if reason:
        raise ValueError(f"against: {reason}")
    return bench_torch


# -- the toys --------------------------------------------------------------------------------------------


def toys(fast: bool = False, torch_side=None, dev: str = "cpu") -> dict:
    """The small and medium toys, JAX and (with ``torch_side``) PEFT candidates interleaved per toy."""
    repeats = REPEATS["toys"][bool(fast)]
    out = {}
    for name in bench_engine.SIZES:
        c = bench_engine.toy_candidates(name, fast)
        fns, units = dict(c["fns"]), dict(c["units"])
        if name == "medium":
            k_mm = 7 * c["steps"]     # about the toy's matmul work per call
            fns["matmul"], mm_flops = bench_engine.matmul_chain(c["n"], c["d"], k_mm)
            units["matmul"] = k_mm
        torch_info = None
        if torch_side is not None:
            t_seeds = 1 if (name == "medium" or fast) else 4
            tc = torch_side.toy_candidates(c["arrays"], c["r"], c["steps"], t_seeds, compiled=not fast, dev=dev)
            fns.update(tc["fns"])
            units.update(tc["units"])
            torch_info = {"seeds_python_loop": t_seeds, "first_call_s": tc["compile_s"], "device": dev,
                          "errors": tc["errors"]}
        timed = bench_timing.interleaved(fns, repeats, warm=0)
        per_unit = {k: {q: 1e3 * v / units[k] if q in ("median", "lo", "hi") else v
                        for q, v in timed["median_s"][k].items()} for k in fns}
        flops = c["flops_per_step"]
        res = {k: c[k] for k in ("d", "n", "r", "layers", "steps", "seeds", "compile_s", "flops_per_step",
                                 "xla_flops_per_step")}
        res.update(ms_per_seed_step=per_unit, units=units, torch=torch_info,
                   gflops={k: flops / (per_unit[k]["median"] / 1e3) / 1e9 for k in fns if k != "matmul"})
        # names kept from earlier versions of the bench
        res.update(ms_per_step_scan=per_unit["jax_scan"]["median"],
                   ms_per_seed_step_vmapped=per_unit["jax_vmapped"]["median"],
                   ms_per_step_python_loop=per_unit.get("jax_loop", {}).get("median"),
                   gflops_scan=res["gflops"]["jax_scan"], gflops_vmapped=res["gflops"]["jax_vmapped"])
        ratios = {}
        for k in fns:
            if k.startswith("peft_"):
                ratios[f"{k}/jax_vmapped"] = _per_round(timed, units, k, "jax_vmapped")
                ratios[f"{k}/jax_scan"] = _per_round(timed, units, k, "jax_scan")
        if name == "medium":
            res["matmul_gflops"] = mm_flops / k_mm / (per_unit["matmul"]["median"] / 1e3) / 1e9
            # share per round: (toy FLOPs / toy time) / (matmul FLOPs / matmul time)
            share = _per_round(timed, units, "matmul", "jax_scan")
            ratios["matmul_share_scan"] = {q: v * flops / (mm_flops / k_mm) if q in ("median", "lo", "hi") else v
                                           for q, v in share.items()}
            share_v = _per_round(timed, units, "matmul", "jax_vmapped")
            ratios["matmul_share_vmapped"] = {q: v * flops / (mm_flops / k_mm) if q in ("median", "lo", "hi")
                                              else v for q, v in share_v.items()}
        res["ratios"] = ratios
        out[name] = res
    out["matmul_1024_gflops"] = bench_engine.matmul_1024()
    return out


# -- ALLoRA's step -------------------------------------------------------------------------------------------


def allora(fast: bool = False, torch_side=None, dev: str = "cpu") -> dict:
    """ALLoRA / naive ALLoRA / DoRA / LoRA step ratios per size; torch candidates at the larger size."""
    t0 = time.perf_counter()
    repeats = REPEATS["allora"][bool(fast)]
    sizes = bench_allora.FAST_SIZES if fast else bench_allora.FULL_SIZES
    cases = []
    for i, (d, r, n) in enumerate(sizes):
        c = bench_allora.step_candidates(d, r, n)
        fns = dict(c["fns"])
        with_torch = torch_side is not None and i == len(sizes) - 1
        if with_torch:
            tc = torch_side.allora_step_candidates(*c["inputs"], compiled=not fast, dev=dev)
            fns.update(tc["fns"])
        timed = bench_timing.interleaved(fns, repeats, warm=0)
        case = bench_allora.summarize_case(d, r, n, timed)
        if with_torch:
            units = {k: 1 for k in fns}
            case["torch_ms"] = {k: fmt_ms(timed["median_s"][k]) for k in fns if k.startswith("torch_")}
            case["torch_first_call_s"], case["torch_errors"] = tc["first_call_s"], tc["errors"]
            pairs = [("torch_allora", "torch_lora"), ("torch_allora_listing", "torch_lora"),
                     ("torch_allora_compiled", "torch_lora_compiled"), ("torch_lora", "lora"),
                     ("torch_allora", "allora"), ("torch_lora_compiled", "lora"),
                     ("torch_allora_compiled", "allora")]
            case["torch_ratios"] = {f"{a}/{b}": _per_round(timed, units, a, b) for a, b in pairs
                                    if a in fns and b in fns}
        cases.append(case)
    return {"cases": cases, "methods": bench_allora.METHODS, "fast": bool(fast), "backend": jax.default_backend(),
            "dtype": "float32", "seconds": time.perf_counter() - t0}


def fmt_ms(m: dict) -> dict:
    return {q: 1e3 * v if q in ("median", "lo", "hi") else v for q, v in m.items()}


# -- the bf16-matmul variants (GPU) ---------------------------------------------------------------------------


def precision(fast: bool = False) -> dict:
    """Medium toy and matmul chain under each matmul precision, interleaved (run on a GPU by :func:`main`)."""
    c = bench_engine.precision_candidates(fast)
    timed = bench_timing.interleaved(c["fns"], REPEATS["toys"][bool(fast)], warm=0)
    rows = {}
    for k in c["fns"]:
        m = timed["median_s"][k]
        rows[k] = {"ms_per_unit": {q: 1e3 * v / c["units"][k] if q in ("median", "lo", "hi") else v
                                   for q, v in m.items()},
                   "gflops": c["flops"][k] * c["units"][k] / m["median"] / 1e9}
    return {"rows": rows, "steps": c["steps"], "d": c["d"], "n": c["n"], "r": c["r"]}


# -- aims, tables, main ------------------------------------------------------------------------------------


def aims(result: dict) -> dict:
    """Each aim of issue 15: its measured median and interval, target and whether the median meets it
    (None when not measured in this run)."""
    e, out = result["engine"], {}
    values = {"small_vs_peft_eager": e["small"]["ratios"].get("peft_eager/jax_vmapped"),
              "medium_vs_peft_eager": e["medium"]["ratios"].get("peft_eager/jax_scan"),
              "medium_matmul_share": e["medium"]["ratios"]["matmul_share_scan"]}
    big = result["allora"]["cases"][-1]
    if (big["d"], big["r"]) == (4096, 64):
        lo, hi = big["ratio_ci95"]["allora"]
        values["allora_over_lora"] = {"median": big["ratio"]["allora"], "lo": lo, "hi": hi}
    for name, (desc, target, kind) in AIMS.items():
        v = values.get(name)
        met = None if v is None else bool(v["median"] >= target if kind == "min" else v["median"] <= target)
        out[name] = {"description": desc, "target": target, "kind": kind, "value": v, "met": met}
    return out


def format_table(rows: list[tuple]) -> str:
    """Left-aligned columns, header first.

    >>> print(format_table([("a", "bb"), ("ccc", "d")]))
    a    bb
    ccc  d
    """
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _print_report(result: dict) -> None:
    m = result["machine"]
    print(f"backend {m['backend']} ({', '.join(m['device_kinds'])}), load {m['load_start']['load_1min']:.2f} "
          f"→ {m['load_end']['load_1min']:.2f} on {m['load_start']['cores']} cores")
    if result.get("matmul_precision", "default") != "default":
        print(f"float32 rows: JAX matmuls at jax.default_matmul_precision({result['matmul_precision']!r}) "
              f"(full float32, as torch); TF32 / bf16 variants in the precision table")
    if result.get("peft_notice"):
        print(result["peft_notice"])
    if result.get("consistency"):
        c = result["consistency"]
        print(f"same numbers in both engines (float32, same weights): max relative error "
              f"{max(c['errors'].values()):.1e} <= {c['tolerance']:.1e} over {len(c['errors'])} loss and "
              f"gradient checks (ALLoRA's A gradient differs from LoRA's by {c['allora_vs_lora_grad_A']:.2f})")
    e = result["engine"]
    rows = [("toy (L=4, Adam, f32)", "candidate", "ms per seed-step [95% CI]", "GFLOP/s", "first call s")]
    for name in bench_engine.SIZES:
        v = e[name]
        for k, ms in v["ms_per_seed_step"].items():
            first = v["compile_s"] if k == "jax_scan" else (v["torch"] or {}).get("first_call_s", {}).get(k, "")
            gf = v["gflops"].get(k, v.get("matmul_gflops") if k == "matmul" else None)
            rows.append((f"{name} d={v['d']} n={v['n']} r={v['r']}", f"{k} ({v['units'][k]} per call)",
                         fmt_ci(ms, digits=4), f"{gf:.1f}" if gf is not None else "",
                         f"{first:.1f}" if isinstance(first, float) else ""))
    print(format_table(rows))
    print(f"plain f32 1024³ matmul: {e['matmul_1024_gflops']:.1f} GFLOP/s")
    print("ALLoRA / DoRA step time over LoRA's (median of per-round ratios):")
    print(bench_allora.format_table(result["allora"]))
    big = result["allora"]["cases"][-1]
    if "torch_ms" in big:
        print(f"one training step of one layer, d={big['d']} r={big['r']} n={big['n']} (SGD, float32), "
              f"JAX vs PyTorch in the same run, ms [95% CI]:")
        print(format_table(step_table(result["allora"])))
        for k, why in big.get("torch_errors", {}).items():
            print(f"  {k}: not timed ({why})")
    if "torch_ratios" in big:
        print(format_table([("torch step ratio", "median [95% CI]")] +
                           [(k, fmt_ci(v, digits=3)) for k, v in big["torch_ratios"].items()]))
    if result.get("transformer"):
        print(bench_transformer.describe(result["transformer"]))
    for name in bench_scale.SERIES:
        if name in result["scale"]:
            print(f"scaling with {name}:")
            print(format_table(bench_scale.table(result["scale"][name])))
    sh = result.get("sharding")
    if isinstance(sh, dict):
        print(format_table([("devices", "ms per call [95% CI]", "ms/seed-step", "overhead vs 1")] +
                           [(r["devices"], fmt_ci(r["s_per_call"], 1e3), f"{r['ms_per_seed_step']:.4f}",
                             f"{r['overhead']:.2f}") for r in sh["rows"]]))
    else:
        print(f"sharding: {sh}")
    w = result.get("workers")
    if isinstance(w, dict):
        print(f"one process per core ({w['jobs']} together) against one alone, one XLA thread each:")
        print(format_table(bench_workers.table(w)))
    elif w:
        print(f"workers: {w}")
    if result.get("precision"):
        print(format_table([("precision variant", "ms per unit [95% CI]", "GFLOP/s")] +
                           [(k, fmt_ci(v["ms_per_unit"], digits=4), f"{v['gflops']:.1f}")
                            for k, v in result["precision"]["rows"].items()]))
    rows = [("aim", "measured [95% CI]", "target", "met")]
    for name, a in result["aims"].items():
        v = a["value"]
        rows.append((a["description"], fmt_ci(v, digits=3) if v else "not measured",
                     ("≥ " if a["kind"] == "min" else "≤ ") + f"{a['target']:g}",
                     {True: "yes", False: "NO", None: "-"}[a["met"]]))
    print(format_table(rows))


STEP_PAIRS = (  # (row, JAX candidate, torch eager, torch compiled)
    ("LoRA", "lora", "torch_lora", "torch_lora_compiled"),
    ("ALLoRA (Gram row norms)", "allora", "torch_allora", "torch_allora_compiled"),
    ("ALLoRA (listing: forms BA)", "allora_naive", "torch_allora_listing", None),
)


def step_table(allora_result: dict) -> list[tuple]:
    """Rows (header first): the larger size's step in JAX, torch eager and torch.compile, and torch / JAX."""
    big = allora_result["cases"][-1]
    tm, rt = big.get("torch_ms", {}), big.get("torch_ratios", {})
    rows = [("step", "JAX jit", "torch eager", "torch.compile", "eager / JAX")]
    cell = lambda k: fmt_ci(tm[k]) if k in tm else "-"
    for label, j, te, tc in STEP_PAIRS:
        ratio = rt.get(f"{te}/{j}")
        if ratio is None and te in tm:
            ratio = {q: tm[te][q] / big["time_ms"][j] for q in ("median",)}
        rows.append((label, f"{big['time_ms'][j]:.2f}", cell(te), cell(tc) if tc else "-",
                     f"{ratio['median']:.2f}" if ratio else "-"))
    return rows


def bench_torch_hint() -> str:
    """How to add the PyTorch + PEFT columns."""
    return ('add the PyTorch + PEFT columns with pip install "toyllora[peft]" and toyllora bench --against peft')


def check_out(out) -> Path:
    """``out`` as a Path, or ValueError unless it names a ``.json`` file (not a folder)."""
    out = Path(out)
    if out.suffix != ".json" or out.is_dir():
        raise ValueError(f"out: the bench result is a .json file path, got {str(out)!r}")
    return out


def main(out="results/bench.json", fast: bool = False, against: str | None = None,
         scale: bool = True) -> dict:
    """Run the bench, print its tables and write ``out`` (JSON) and ``<out stem>_scale.png`` atomically.

    Args:
      out: the JSON file to write (ValueError unless it ends in ``.json``).
      fast: fewer rounds and sizes, no sharding subprocesses, no torch.compile.
      against: ``"peft"`` to time PyTorch + PEFT in the same run (needs ``toyllora[peft]``; without it one
        line says how to install it and toyllora is timed alone), or None.
      scale: run the scaling series (seeds, width, depth, devices).
    """
    out = check_out(out)
    check_against(against)
    t0 = time.perf_counter()
    torch_side = _torch_setup(against)
    notice = None if against else f"timing toyllora alone; {bench_torch_hint()}"
    info = bench_engine.backend_info()
    dev = torch_side.device(info["backend"]) if torch_side else None
    result = {"fast": bool(fast), "against": against, "peft_notice": notice,
              "machine": {"platform": platform.platform(), "load_start": bench_timing.load(), **info}}
    versions = io.versions()
    if torch_side:
        versions.update(torch_side.versions(), torch_device=dev)
    result["versions"] = versions
    if torch_side:
        result["consistency"] = torch_side.consistency()
        if not result["consistency"]["ok"]:   # timings of two different computations compare nothing
            raise RuntimeError(f"bench: JAX and PyTorch disagree: {result['consistency']}")
    # float32 means float32 on both sides: on a GPU JAX's default matmul precision may be TensorFloat-32
    # while torch's is full float32; the TF32 / bf16 variants are timed apart (``precision``).
    gpu = info["backend"] == "gpu"
    result["matmul_precision"] = F32_PRECISION if gpu else "default"
    with jax.default_matmul_precision(F32_PRECISION) if gpu else contextlib.nullcontext():
        result["engine"] = toys(fast, torch_side, dev)
        result["allora"] = allora(fast, torch_side, dev)
        result["transformer"] = bench_transformer.sweep_throughput(fast)
        result["scale"] = ({name: bench_scale.series(name, fast) for name, spec in bench_scale.SERIES.items()
                            if spec[2 if fast else 1]} if scale else {})
    result["sharding"] = (bench_scale.sharding() if scale and not fast else
                          "skipped (--fast)" if scale else "skipped")
    result["workers"] = (bench_workers.scaling() if scale and not fast and not gpu else
                         "skipped (--fast)" if fast else "skipped (GPU)" if gpu else "skipped")
    result["precision"] = precision(fast) if gpu else None
    result["aims"] = aims(result)
    result["machine"]["load_end"] = bench_timing.load()
    reproduce_time = out.parent / "reproduce_time.json"
    if reproduce_time.exists():
        result["reproduce"] = json.loads(reproduce_time.read_text())
    result["seconds"] = time.perf_counter() - t0
    _print_report(result)
    if result["scale"]:
        png = bench_scale.plot(result["scale"], out.with_name(out.stem + "_scale.png"))
        result["scale_png"] = png.name
        print(f"scaling plot: {png}")
    io.write_json(out, result)
    print(f"({result['seconds']:.1f} s) -> {out}")
    return result
