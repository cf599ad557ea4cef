"""allora.input-gradient: ALLoRA passes the gradient to the lower layers unscaled; scaling it too fine-tunes worse."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from toyllora import models
from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import FAST_FINETUNE, Finetune, compare, finetune_data, method_config
from toyllora.claims.ripple._common import plot_finetune
from toyllora.config import LoraConfig
from toyllora.data import deep_teacher
from toyllora.precision import tol

STATEMENT = ("ALLoRA leaves the gradient passed to the lower layers unscaled, which limits the ripple: scaling it "
             "too (scale_input_grad=True) would fine-tune a deep net worse.")
SOURCE = "paper"
FLAW = "ripple"
METHODS = ("ALLoRA", "ALLoRA, input grad scaled")
Z = 2.0                    # the verdict: a cell is a win for ALLoRA if z > Z, a loss if z < −Z
SAME_F32, SAME_F64 = 1e-5, 1e-12   # the verdict: ALLoRA's input gradient equals LoRA's to this (relative)
DIFFERENT = 1e-3           # ... and the scaled switch's differs by more than this


@dataclasses.dataclass(frozen=True)
class Params:
    finetune: Finetune = Finetune()   # the ripple.performance task and protocol (the sweeps are shared)
    mechanism_layers: int = 3         # the mechanism check: a small net with B != 0
    mechanism_d: int = 6
    mechanism_rank: int = 2


SETUP = Setup(full=Params(), fast=Params(finetune=FAST_FINETUNE))


def rule(p: Params) -> str:
    f = p.finetune
    return (f"Mechanism: on a {p.mechanism_layers}-layer net with B != 0, the gradient w.r.t. the input under "
            f"ALLoRA equals LoRA's (s = 1) to {fmt(SAME_F32)} relative ({fmt(SAME_F64)} in float64), and differs by "
            f"> {fmt(DIFFERENT)} under scale_input_grad=True; otherwise not supported. Performance: the "
            f"ripple.performance task and protocol (depths {fmt(f.depths)}; {f.short} and {f.long} Adam steps; lr "
            f"tuned on 2^{f.log2_lrs[0]}..2^{f.log2_lrs[-1]} per method; {f.n_seeds} seeds); per (depth, budget) "
            f"cell z = (scaled mean − ALLoRA mean)/sqrt(se² + se²). supported: no cell with z < −{fmt(Z)} and "
            f"z > {fmt(Z)} in at least half; inconclusive: all |z| <= {fmt(Z)}; not supported: cells with "
            f"z < −{fmt(Z)} at least as many as with z > {fmt(Z)}; partly supported otherwise.")


@functools.partial(jax.jit, static_argnums=0)
def _input_grad(model, frozen, params, X, Y):
    return jax.grad(lambda X: models.mse(model.apply(frozen, params, X), Y))(X)


def input_gradient_mechanism(seed: int = 0, L: int = 3, d: int = 6, rank: int = 2):
    """Max relative deviation of the gradient w.r.t. the network input: ALLoRA vs LoRA (s = 1), and the
    ratio of the scaled switch's input gradient to ALLoRA's at a state where c != 1 (B != 0)."""
    base, data, _ = deep_teacher(seed, layers=L, d=d, n_train=16, n_test=4, base="gaussian", shift=1.0)
    key = jax.random.key(seed)
    cfg_a = method_config("ALLoRA", rank).replace(init="both")
    m_a = models.MultilinearLoRA(cfg_a)
    frozen, params = m_a.init(key, base)
    m_l = models.MultilinearLoRA(LoraConfig(rank=rank, scaling="none"))
    m_s = models.MultilinearLoRA(cfg_a.replace(scale_input_grad=True))
    g_a, g_l, g_s = (np.asarray(_input_grad(m, frozen, params, data.X, data.Y), np.float64)
                     for m in (m_a, m_l, m_s))
    return {"allora_vs_lora_rel": float(np.linalg.norm(g_a - g_l) / np.linalg.norm(g_l)),
            "scaled_vs_allora_rel": float(np.linalg.norm(g_s - g_a) / np.linalg.norm(g_a))}


def measure(p: Params, seed: int) -> dict:
    out = finetune_data(p.finetune, seed, METHODS)
    out["mechanism"] = input_gradient_mechanism(seed, p.mechanism_layers, p.mechanism_d, p.mechanism_rank)
    cells, wins, losses = [], 0, 0
    for L in out["depths"]:
        for bname in out["budgets"]:
            z = compare(out["results"][f"ALLoRA|L={L}|{bname}"],
                        out["results"][f"ALLoRA, input grad scaled|L={L}|{bname}"])
            cells.append({"depth": L, "budget": bname, "z": z})
            wins += int(z > Z)
            losses += int(z < -Z)
    out["comparisons"], out["wins"], out["losses"], out["n_cells"] = cells, wins, losses, len(cells)
    return out


def verdict(m: dict) -> str:
    mech = m["mechanism"]["allora_vs_lora_rel"] <= tol(f32=SAME_F32, f64=SAME_F64) and \
        m["mechanism"]["scaled_vs_allora_rel"] > DIFFERENT
    if not mech:
        return "not supported"
    if m["wins"] == 0 and m["losses"] == 0:
        return "inconclusive"
    if m["losses"] == 0 and 2 * m["wins"] >= m["n_cells"]:
        return "supported"
    if m["losses"] >= m["wins"]:
        return "not supported"
    return "partly supported"


def plot(record: dict):
    """Tuned loss (relative to the base model) against depth, ALLoRA and the scaled switch, both budgets."""
    return plot_finetune(record["measurements"])


def _case(wins, losses, same=0.0, scaled=0.5, n_cells=6):
    return {"mechanism": {"allora_vs_lora_rel": same, "scaled_vs_allora_rel": scaled}, "wins": wins,
            "losses": losses, "n_cells": n_cells}


VERDICT_EXAMPLES = [
    (_case(3, 0), "supported"),                        # exactly half of the cells
    (_case(6, 0, same=1e-13), "supported"),            # below the float64 (and float32) tolerance
    (_case(0, 0), "inconclusive"),
    (_case(2, 0), "partly supported"),                 # just under half
    (_case(2, 1), "partly supported"),
    (_case(0, 2), "not supported"),
    (_case(1, 1), "not supported"),                    # losses = wins
    (_case(6, 0, same=0.1), "not supported"),          # the input gradient is not LoRA's
    (_case(6, 0, same=2e-5), "not supported"),         # above the float32 tolerance too
    (_case(6, 0, scaled=1e-3), "not supported"),       # the switch changes nothing (not > 1e-3)
    (_case(6, 0, scaled=1.1e-3), "supported"),         # just above
]
