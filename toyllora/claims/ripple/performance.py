"""ripple.performance: with tuned learning rates, ALLoRA fine-tunes a deep multilinear net at least as well as LoRA
at every s, and better at depth."""

from __future__ import annotations

import dataclasses

from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import FAST_FINETUNE, Finetune, compare, finetune_data, plot_finetune
from toyllora.conventions import DEFAULT_ETA

STATEMENT = ("ALLoRA fixes (mitigates) the ripple effect of the scaling factor: on a deep multilinear fine-tuning "
             "task, with every method's learning rate tuned, ALLoRA reaches a loss at least as low as LoRA at every "
             "alpha (and at s = 1), and beats it at depth.")
SOURCE = "paper"
Z = 2.0  # the verdict: ALLoRA wins a cell if z > Z, loses it if z < −Z


@dataclasses.dataclass(frozen=True)
class Params:
    finetune: Finetune = Finetune()
    methods: tuple = ("LoRA s=0.25", "LoRA s=1", "LoRA s=4", "LoRA s=16", "ALLoRA")
    note: str = ""


SETUP = Setup(full=Params(), fast=Params(
    finetune=FAST_FINETUNE, methods=("LoRA s=16", "ALLoRA"),
    note="fast mode is a smoke test: one depth (L = 2) and only LoRA s = 16 against ALLoRA; the verdict of record "
         "is the full mode (four LoRA scales, three depths)"))


def rule(p: Params) -> str:
    f = p.finetune
    scales = [m[len("LoRA s="):] for m in p.methods if m.startswith("LoRA s=")]
    return (f"Task data.deep_teacher (gaussian base, width {f.d}, n = {f.n_train}, every layer shifted by a "
            f"rank-{f.shift_rank} matrix of norm {fmt(f.shift)}), rank {f.rank}, Adam, full batch, depths L in "
            f"{fmt(f.depths)}; methods LoRA with s in {{{', '.join(scales)}}} and ALLoRA (eta = {fmt(DEFAULT_ETA)}); "
            f"each method's lr tuned on the grid 2^{f.log2_lrs[0]}..2^{f.log2_lrs[-1]} (one Trainer.sweep per method "
            f"and depth, {f.n_seeds} seeds) for each budget ({f.short} and {f.long} steps) by mean train loss. Each "
            "(depth, budget, LoRA variant) cell: z = (LoRA mean − ALLoRA mean)/sqrt(se² + se²); ALLoRA wins if "
            f"z > {fmt(Z)}, loses if z < −{fmt(Z)}. supported: no losses and wins in at least half of the cells at "
            "the largest depth; not supported: losses >= wins (and at least one loss); inconclusive: no wins and "
            "no losses; partly supported otherwise.")


def measure(p: Params, seed: int) -> dict:
    out = finetune_data(p.finetune, seed, p.methods)
    cells, wins, losses = [], 0, 0
    for L in out["depths"]:
        for bname in out["budgets"]:
            a = out["results"][f"ALLoRA|L={L}|{bname}"]
            for m in out["methods"]:
                if m == "ALLoRA":
                    continue
                z = compare(a, out["results"][f"{m}|L={L}|{bname}"])
                cells.append({"depth": L, "budget": bname, "vs": m, "z": z})
                wins += int(z > Z)
                losses += int(z < -Z)
    out["comparisons"] = cells
    out["wins"], out["losses"], out["n_cells"] = wins, losses, len(cells)
    Lmax = max(out["depths"])
    out["wins_at_Lmax"] = sum(1 for c in cells if c["depth"] == Lmax and c["z"] > Z)
    out["cells_at_Lmax"] = sum(1 for c in cells if c["depth"] == Lmax)
    # the ripple itself: spread of LoRA's tuned loss over s at each depth and budget
    out["lora_spread"] = {}
    for L in out["depths"]:
        for bname in out["budgets"]:
            vals = [out["results"][f"{m}|L={L}|{bname}"]["mean"] for m in out["methods"] if m.startswith("LoRA")]
            vals = [v for v in vals if v is not None]
            out["lora_spread"][f"L={L}|{bname}"] = float(max(vals) / max(min(vals), 1e-300)) if vals else None
    return out


def verdict(m: dict) -> str:
    if m["losses"] == 0 and m["wins"] == 0:
        return "inconclusive"
    if m["losses"] == 0 and m["wins_at_Lmax"] * 2 >= m["cells_at_Lmax"]:
        return "supported"
    if m["losses"] >= m["wins"]:
        return "not supported"
    return "partly supported"


def plot(record: dict):
    """Tuned loss (relative to the base model) against depth, short and long budget, mean ± std over seeds."""
    return plot_finetune(record["measurements"])


def _case(wins, losses, wins_at_max, cells_at_max=4):
    return {"wins": wins, "losses": losses, "wins_at_Lmax": wins_at_max, "cells_at_Lmax": cells_at_max}


VERDICT_EXAMPLES = [
    (_case(0, 0, 0), "inconclusive"),
    (_case(4, 0, 2), "supported"),             # exactly half of the cells at the largest depth
    (_case(3, 0, 1), "partly supported"),      # just under half
    (_case(1, 1, 0), "not supported"),         # losses = wins
    (_case(1, 2, 1), "not supported"),
    (_case(3, 1, 2), "partly supported"),      # a loss, fewer than the wins
]
