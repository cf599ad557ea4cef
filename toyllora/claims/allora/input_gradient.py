"""allora.input-gradient: ALLoRA passes the gradient to the lower layers unscaled; scaling it too fine-tunes worse."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from toyllora import models
from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import (ALLORA, FAST_TOY, SCALED, Toy, compare_methods, count, diff_rows,
                                            holm_counting_edges, method_config, plot_scores, points_table, toy_text)
from toyllora.config import LoraConfig
from toyllora.data import deep_teacher
from toyllora.precision import tol

STATEMENT = ("ALLoRA leaves the gradient passed to the lower layers unscaled, which limits the ripple: scaling it "
             "too (scale_input_grad=True) would fine-tune a deep net worse.")
SOURCE = "paper"
FLAW = "ripple"
METHODS = (ALLORA, SCALED)
SAME_F32, SAME_F64 = 1e-5, 1e-12   # the verdict: ALLoRA's input gradient equals LoRA's to this (relative)
DIFFERENT = 1e-3           # ... and the scaled switch's differs by more than this


@dataclasses.dataclass(frozen=True)
class Params:
    toy: Toy = Toy()                  # the ripple.performance toy and protocol (the runs are shared)
    mechanism_layers: int = 3         # the mechanism check: a small net with B != 0
    mechanism_d: int = 6
    mechanism_rank: int = 2


SETUP = Setup(full=Params(), fast=Params(toy=FAST_TOY))


def rule(p: Params) -> str:
    t = p.toy
    n = len(t.tasks) * len(t.depths) * 2 * 2
    return (f"Mechanism: on a {p.mechanism_layers}-layer net with B != 0, the gradient w.r.t. the input under "
            f"ALLoRA equals LoRA's (s = 1) to {fmt(SAME_F32)} relative ({fmt(SAME_F64)} in float64), and differs by "
            f"> {fmt(DIFFERENT)} under scale_input_grad=True; otherwise not supported. Performance: {toy_text(t)}. "
            "ALLoRA against the same with scale_input_grad=True (the control: the only change is the scaled input "
            "gradient), the same tuning runs for each; per (task, depth, optimizer, budget) cell the paired "
            "difference of test points ALLoRA − scaled (paired by draw and seed), exact sign-flip test with draws "
            f"as groups (a win needs every draw to agree), Holm over all {n} cells; a cell where either pick still "
            "sits at a grid edge counts for neither side. With the mechanism: supported: no losses and wins in at "
            "least half of the comparable cells; not supported: losses in at least half of them; inconclusive: "
            "fewer than half of the cells comparable; partly supported otherwise (the mechanism as stated, its "
            "consequence not in most cells).")


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
    t = p.toy
    out = {"depths": list(t.depths), "tasks": list(t.tasks), "methods": list(METHODS)}
    out["mechanism"] = input_gradient_mechanism(seed, p.mechanism_layers, p.mechanism_d, p.mechanism_rank)
    diffs = holm_counting_edges(compare_methods(ALLORA, SCALED, seed, t))
    out.update(diffs=diffs, **count(diffs), per_optimizer={o: count(diffs, optimizer=o) for o in ("sgd", "adam")},
               per_task={k: count(diffs, task=k) for k in t.tasks})
    out["n_cells"] = len(diffs)
    out["points"], out["edge"] = points_table(METHODS, seed, t)
    out["table_md"] = diff_rows(diffs)
    return out


def verdict(m: dict) -> str:
    mech = m["mechanism"]["allora_vs_lora_rel"] <= tol(f32=SAME_F32, f64=SAME_F64) and \
        m["mechanism"]["scaled_vs_allora_rel"] > DIFFERENT
    if not mech:
        return "not supported"
    comparable = m["n_cells"] - m["at_edge"]
    if 2 * comparable < m["n_cells"]:
        return "inconclusive"
    if m["losses"] == 0 and 2 * m["wins"] >= comparable:
        return "supported"
    if 2 * m["losses"] >= comparable:
        return "not supported"
    return "partly supported"


def plot(record: dict):
    """Test loss left (100 − points) against depth, ALLoRA and the scaled switch, per task and budget."""
    d = record["measurements"]
    return plot_scores(d, d["methods"], "ALLoRA vs ALLoRA with the input gradient scaled too")


def _case(wins, losses, same=0.0, scaled=0.5, n_cells=6, at_edge=0):
    return {"mechanism": {"allora_vs_lora_rel": same, "scaled_vs_allora_rel": scaled}, "wins": wins,
            "losses": losses, "n_cells": n_cells, "at_edge": at_edge}


VERDICT_EXAMPLES = [
    (_case(3, 0), "supported"),                        # exactly half of the cells
    (_case(6, 0, same=1e-13), "supported"),            # below the float64 (and float32) tolerance
    (_case(0, 0), "partly supported"),                 # the mechanism holds; no cell differs
    (_case(2, 0), "partly supported"),                 # just under half
    (_case(2, 1), "partly supported"),
    (_case(0, 2), "partly supported"),                 # losses, under half of the cells
    (_case(1, 3), "not supported"),                    # losses in half of the cells
    (_case(6, 0, same=0.1), "not supported"),          # the input gradient is not LoRA's
    (_case(6, 0, same=2e-5), "not supported"),         # above the float32 tolerance too
    (_case(6, 0, scaled=1e-3), "not supported"),       # the switch changes nothing (not > 1e-3)
    (_case(6, 0, scaled=1.1e-3), "supported"),         # just above
    (_case(2, 0, at_edge=2), "supported"),             # half of the 4 comparable cells (2 at an edge)
    (_case(3, 0, at_edge=4), "inconclusive"),          # 2 of 6 comparable: under half
]
