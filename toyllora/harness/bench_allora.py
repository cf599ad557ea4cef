"""Step-time benchmark: ALLoRA vs LoRA vs DoRA on one layer (reviewers' question 10: ALLoRA's extra cost).

One training step = forward ``W x + branch`` (frozen W included) + backward + SGD update, float32,
``jax.jit``, timed with ``block_until_ready``. The methods are timed in interleaved rounds (one step of
each per round, every other round in reverse order) so that load on a shared machine hits them alike; the
reported ratio to LoRA is the median over rounds of the per-round ratio, with its quartiles and a
distribution-free 95 % interval. Beside the wall times, XLA's cost analysis of each compiled step (flops,
bytes accessed) gives a deterministic cost.

Methods:
  * ``lora``: ``W x + s·B A x`` by plain autodiff (:func:`toyllora.lora.apply`).
  * ``allora``: :func:`toyllora.allora.branch`, row norms by the cheap exact form
    ``||(BA)_i||² = b_iᵀ (A Aᵀ) b_i`` — O(r²(d_in + d_out)).
  * ``allora_naive``: the same custom VJP, but the row norms are taken of an explicitly formed ``B A`` —
    O(d_out r d_in), as in the paper's PyTorch listing.
  * ``dora``: PEFT-style DoRA (row norm of ``W + s·BA`` detached), :func:`toyllora.lora.apply`.

Run: ``python -m toyllora.bench_allora [--fast]`` (full: about a minute on 2 CPU cores; fast: < 10 s).

Example:
    >>> r = allora_step_ratios(fast=True)            # doctest: +SKIP
    >>> sorted(r["cases"][0]["ratio"])                # doctest: +SKIP
    ['allora', 'allora_naive', 'dora', 'lora']

References:
  Huang & Balestriero, arXiv:2410.09692 (ALLoRA); Liu et al., arXiv:2402.09353 (DoRA).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import allora, lora
from toyllora.config import LoraConfig
from toyllora.harness import bench_timing

METHODS = ("lora", "allora", "allora_naive", "dora")
FULL_SIZES = ((1024, 16, 256), (4096, 64, 64))   # (d, r, n): W is d×d
FAST_SIZES = ((512, 16, 32),)
ETA = 2.0
LR = 1e-3


# -- the naive ALLoRA (forms BA) --------------------------------------------------------------------


@jax.custom_vjp
def _naive_branch(x, A, B, inv_eta2):
    return (x @ A.T) @ B.T


def _naive_fwd(x, A, B, inv_eta2):
    h = x @ A.T
    c = jax.lax.rsqrt(jnp.linalg.norm(B @ A, axis=1) + inv_eta2)   # forms the d_out × d_in product
    return h @ B.T, (x, A, B, h, c, inv_eta2)


def _naive_bwd(res, g):
    x, A, B, h, c, inv_eta2 = res
    gc = g * c
    d_B = jnp.einsum("...o,...r->or", gc, h)
    d_A = jnp.einsum("...r,...i->ri", gc @ B, x)
    return (g @ B) @ A, d_A, d_B, jnp.zeros_like(inv_eta2)


_naive_branch.defvjp(_naive_fwd, _naive_bwd)


def naive_branch(x, A, B, *, eta):
    """ALLoRA's branch with the row norms of an explicitly formed ``B A`` (the reference listing's cost).

    Same values and gradients as :func:`toyllora.allora.branch` (``adapt="both"``).
    """
    allora._check(eta, "both")
    return _naive_branch(x, A, B, 1.0 / jnp.square(jnp.asarray(eta, x.dtype)))


# -- one step per method ----------------------------------------------------------------------------


def _config(method: str, r: int) -> LoraConfig:
    if method == "lora":
        return LoraConfig(rank=r, alpha=float(r))
    if method == "dora":
        return LoraConfig(rank=r, alpha=float(r), dora=True)
    return LoraConfig(rank=r, method="allora", scaling="none", eta=ETA)


def _make_step(method: str, r: int):
    cfg = _config(method, r)

    def loss_fn(params, W, x, y):
        if method == "allora_naive":
            pred = x @ W.T + naive_branch(x, params.A, params.B, eta=ETA)
        else:
            pred = lora.apply(W, params, x, cfg)
        return 0.5 * jnp.mean(jnp.sum(jnp.square(pred - y), axis=-1))

    @jax.jit
    def step(params, W, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, W, x, y)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), loss

    return step, cfg


def _case_inputs(d: int, r: int, n: int, seed: int = 0):
    kW, kx, ky, kp = jax.random.split(jax.random.key(seed), 4)
    f32 = jnp.float32
    W = jax.random.normal(kW, (d, d), f32) / np.sqrt(d)
    x = jax.random.normal(kx, (n, d), f32)
    y = jax.random.normal(ky, (n, d), f32)
    ka, kb = jax.random.split(kp)
    # B != 0 (mid-training state): every branch does its full work
    A = jax.random.normal(ka, (r, d), f32) / np.sqrt(d)
    B = jax.random.normal(kb, (d, r), f32) / np.sqrt(r)
    return W, x, y, A, B


def _params(method: str, cfg: LoraConfig, W, A, B):
    magnitude = jnp.linalg.norm(W + cfg.s * (B @ A), axis=1) if method == "dora" else None
    return lora.LoraParams(A=A, B=B, magnitude=magnitude)


def step_candidates(d: int, r: int, n: int, methods=METHODS) -> dict:
    """One warmed step callable per method at one size (each blocks until its result is ready), XLA's cost
    analysis of each compiled step (``cost[method] = {"flops", "bytes_accessed"}``), and the inputs as numpy
    arrays ``(W, x, y, A, B)`` for another framework to time the same step on."""
    W, x, y, A, B = _case_inputs(d, r, n)
    fns, cost = {}, {}
    for m in methods:
        step, cfg = _make_step(m, r)
        params = _params(m, cfg, W, A, B)
        compiled = step.lower(params, W, x, y).compile()
        cost[m] = bench_timing.xla_cost(compiled)
        jax.block_until_ready(compiled(params, W, x, y))   # warm
        fns[m] = lambda compiled=compiled, params=params: jax.block_until_ready(compiled(params, W, x, y))
    return {"fns": fns, "cost": cost, "inputs": tuple(np.asarray(a) for a in (W, x, y, A, B))}


def time_case(d: int, r: int, n: int, repeats: int, methods=METHODS) -> dict:
    """Median step time (ms) of each method at one size, the per-round ratios to LoRA (median, quartiles
    and a distribution-free 95 % interval of the median) and XLA's flops and bytes per step."""
    c = step_candidates(d, r, n, methods)
    # interleaved, every other round reversed: load and drift hit every method alike
    timed = bench_timing.interleaved(c["fns"], repeats, warm=0, alternate=True)
    return summarize_case(d, r, n, timed, methods, cost=c["cost"])


def summarize_case(d: int, r: int, n: int, timed: dict, methods=METHODS, cost: dict | None = None) -> dict:
    """:func:`time_case`'s dict from interleaved timings (:func:`toyllora.harness.bench_timing.interleaved`)
    that include ``lora``; with ``cost`` (:func:`step_candidates`'s) also ``cost`` and ``flops_ratio``."""
    t = {m: np.asarray(timed["seconds"][m]) for m in methods}
    per_round = {m: t[m] / t["lora"] for m in methods}
    out = {
        "d": d, "r": r, "n": n, "repeats": int(len(t["lora"])),
        "time_ms": {m: float(np.median(t[m]) * 1e3) for m in methods},
        "ratio": {m: float(np.median(per_round[m])) for m in methods},
        "ratio_q25": {m: float(np.quantile(per_round[m], 0.25)) for m in methods},
        "ratio_q75": {m: float(np.quantile(per_round[m], 0.75)) for m in methods},
        "ratio_ci95": {m: [bench_timing.median_ci(per_round[m])[k] for k in ("lo", "hi")] for m in methods},
    }
    if cost is not None:
        out["cost"] = {m: dict(cost[m]) for m in methods}
        out["flops_ratio"] = {m: cost[m]["flops"] / cost["lora"]["flops"] for m in methods}
    return out


def allora_step_ratios(fast: bool = False, repeats: int | None = None) -> dict:
    """Step time of ALLoRA, naive ALLoRA (forms BA), DoRA and LoRA on one layer, and ratios to LoRA.

    Args:
      fast: the small size ``(d, r, n) = (512, 16, 32)`` and few repeats (< 10 s); otherwise
        the issue's sizes ``(1024, 16, 256)`` and ``(4096, 64, 64)``.
      repeats: timing rounds per size (default 30, fast 10; ``toyllora bench --fast`` uses 5).

    Returns:
      ``{"cases": [case, ...], "methods": METHODS, "fast": bool, "backend": str, "dtype": "float32",
      "seconds": wall time}``, each ``case`` a dict with ``d, r, n, repeats``, ``time_ms[method]`` (median),
      ``ratio[method]`` (median over rounds of time / LoRA's time in the same round) and its quartiles
      ``ratio_q25``, ``ratio_q75``. ``cases[-1]`` is the larger size.
    """
    t0 = time.perf_counter()
    sizes = FAST_SIZES if fast else FULL_SIZES
    repeats = repeats if repeats is not None else (10 if fast else 30)
    cases = [time_case(d, r, n, repeats) for d, r, n in sizes]
    return {"cases": cases, "methods": METHODS, "fast": bool(fast), "backend": jax.default_backend(),
            "dtype": "float32", "seconds": time.perf_counter() - t0}


def format_table(result: dict) -> str:
    """A plain-text table of :func:`allora_step_ratios`'s result."""
    lines = [f"{'d':>5} {'r':>3} {'n':>4}  " + "  ".join(f"{m:>22}" for m in result["methods"])]
    for c in result["cases"]:
        cells = [f"{c['time_ms'][m]:8.2f} ms ({c['ratio'][m]:.3f}x)" for m in result["methods"]]
        lines.append(f"{c['d']:>5} {c['r']:>3} {c['n']:>4}  " + "  ".join(f"{s:>22}" for s in cells))
    return "\n".join(lines)


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    result = allora_step_ratios(fast=args.fast, repeats=args.repeats)
    print(format_table(result))
    print(f"({result['seconds']:.1f} s, backend {result['backend']}, ratio = median of per-round ratios)")
    return result


if __name__ == "__main__":
    main()
