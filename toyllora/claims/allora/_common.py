"""What the ALLoRA head-to-head claims share: the protocol runs (cached, shared between claims), the paired
comparisons with their multiplicity control, the tables (comparisons, tuning budgets) and the figures.

Scores are points (higher is better; see :mod:`toyllora.protocol`). A *cell* is one (task, budget,
optimizer). A comparison ``a − b`` in a cell pairs the two methods' test scores by task draw and seed
(``budget.draws`` draws × ``budget.final_seeds`` seeds) and is decided by the exact sign-flip test of
:func:`toyllora.protocol.stats.paired_difference` with the draws as groups (a win needs every draw to agree);
the p-values of all the comparisons of a claim are Holm-adjusted together (:func:`decide`), and a cell where
either method's selected learning rate is still at an edge of its (extended) grid counts as a win for
neither side. The interval shown is the stratified t-interval of the mean paired difference (95 %).

Runs: :func:`results` is the protocol (:func:`protocol.tune_and_test`) for one (task, method, master seed,
budget, arm), cached, so the claims of one reproduce share them (``arm = 0`` is :func:`protocol.method_results`
itself). ``arm = k > 0`` re-runs a method with optimization seeds of its own (tuning and final seeds from
``ARM_OFFSET · k + seed``; the task draws are the master seed's): independent replicates of a comparison.

The paper's numbers: +0.33 mean over LoRA, ALLoRA ahead in 18 of 27; family ablation +0.36 (ALLoRA-OD), +1.10
(ASF-LoRA), +0.93 (LoRA×eta); ALLoRA+D ≈ ALLoRA (+0.06 for ALLoRA); an advantage at every rank.
"""

from __future__ import annotations

import functools

import numpy as np

from toyllora import allora as allora_lib
from toyllora import lora, protocol
from toyllora.plotting import figure, legend
from toyllora.protocol import methods as methods_lib
from toyllora.protocol import stats, tasks as tasks_lib

PAPER = {"vs_lora_mean": 0.33, "vs_lora_ahead": 18, "vs_lora_n": 27,
         "family": {"allora-OD": 0.36, "asf": 1.10, "lora-x-eta": 0.93}, "dropout_neutral": 0.06}
ALLORA_ETAS = ("allora-eta2=1", "allora-eta2=2", "allora")  # eta² = 1, 2, 4 (protocol.ETA2)
EFFECT = 0.33  # points: the paper's headline effect, the margin below which a difference is negligible
# The tasks most head-to-head claims run on: one of each model family (linear, deep linear, MLP classifier
# on real data), so that the claims of one reproduce share their runs.
CORE_TASKS = ("ols-low", "deep-high", "digits")
ARM_OFFSET = 100_000
ADJUST = "holm"


def eta2_text(methods) -> str:
    """The eta² of ALLoRA protocol methods as rule text: ``{1, 2, 4}``."""
    return "{" + ", ".join(f"{protocol.ETA2[m]:g}" for m in methods) + "}"


def cell_name(cell) -> str:
    return "/".join(cell)


def arm_seed(seed: int, arm: int) -> int:
    """The seed whose tuning and final seeds (:func:`protocol.seeds`) an arm uses: the master seed for arm 0."""
    return seed if arm == 0 else ARM_OFFSET * arm + seed


# -- runs ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def results(task_name: str, method: str, seed: int, budget: protocol.Budget, arm: int = 0) -> dict | None:
    """``{optimizer: tune_and_test result}`` of one method on one task (its master seed's draws), or ``None``
    where the method cannot be built on the task (:func:`tasks.applicable`). Cached."""
    draws = protocol.draw_tasks(task_name, seed, budget)
    if not tasks_lib.applicable(draws[0], method):
        return None
    special = method in methods_lib.NEEDS_RUN + methods_lib.NEEDS_SHAPES
    if arm == 0 and not special:
        return protocol.method_results(task_name, method, seed, budget)
    cfg = tasks_lib.method_config_for(draws[0], method, budget.long)
    trainer = protocol.make_trainer(draws[0], method, budget, cfg=cfg)
    s = arm_seed(seed, arm)
    return {o: protocol.tune_and_test(draws, method, o, s, budget, trainer=trainer) for o in protocol.OPTIMIZERS}


def collect(methods, seed: int, budget: protocol.Budget, tasks, arm: int = 0) -> dict:
    """``out[task][method] = {optimizer: result}`` (methods not applicable on a task left out)."""
    out = {}
    for t in tasks:
        out[t] = {}
        for m in dict.fromkeys(methods):
            r = results(t, m, seed, budget, arm)
            if r is not None:
                out[t][m] = r
    return out


def cells(tasks):
    """Every (task, budget, optimizer) cell, in table order."""
    return [(t, b, o) for t in tasks for b in protocol.BUDGETS for o in protocol.OPTIMIZERS]


def entry(res: dict, cell) -> dict:
    """The tune_and_test entry of one cell: ``res[optimizer][budget]``."""
    _, b, o = cell
    return res[o][b]


# -- comparisons -----------------------------------------------------------------------------------------


def compare(res_a: dict, res_b: dict, cell, a: str, b: str, **extra) -> dict:
    """The paired difference ``a − b`` in one cell (test scores paired by draw and seed; unadjusted)."""
    ea, eb = entry(res_a, cell), entry(res_b, cell)
    sa, sb = np.asarray(ea["scores"]), np.asarray(eb["scores"])
    if not np.array_equal(np.asarray(ea["groups"]), np.asarray(eb["groups"])):
        raise ValueError("groups: the two methods' scores are not paired by draw")
    d = stats.paired_difference(sa, sb, groups=np.asarray(ea["groups"]))
    d.update(cell=cell_name(cell), task=cell[0], budget=cell[1], optimizer=cell[2], a=a, b=b,
             mean_a=float(sa.mean()), std_a=float(sa.std(ddof=1)), mean_b=float(sb.mean()),
             std_b=float(sb.std(ddof=1)), failures_a=int(ea["n_failed"]), failures_b=int(eb["n_failed"]),
             edge_a=bool(ea["at_edge"]), edge_b=bool(eb["at_edge"]), lr_a=ea["lr"], lr_b=eb["lr"], **extra)
    d["edge"] = d["edge_a"] or d["edge_b"]
    return d


def compare_methods(res: dict, pairs, tasks, **extra) -> list[dict]:
    """``compare`` for every (a, b) pair in every cell of ``tasks`` where both were run (``res[task][m]``)."""
    out = []
    for a, b in pairs:
        for cell in cells(tasks):
            t = cell[0]
            if a in res[t] and b in res[t]:
                out.append(compare(res[t][a], res[t][b], cell, a, b, **extra))
    return out


def decide(diffs, method: str = ADJUST) -> list[dict]:
    """Adjust the p-values of one claim's comparisons together (Holm by default) and decide each: a win
    needs the adjusted p <= 0.05 and every draw to agree; a cell at a grid edge is a win for neither side."""
    if not diffs:
        return []
    out = stats.compare_all(diffs, method=method)
    for d in out:
        if d["edge"]:
            d["win"] = 0
    return out


def tally(diffs) -> dict:
    """Wins, ties and losses of already decided comparisons (:func:`decide`), with the mean difference and
    the number of edge cells."""
    t = stats.tally(diffs, method=None) if diffs else {"n": 0, "wins": 0, "losses": 0, "ties": 0, "ahead": 0,
                                                      "mean_difference": float("nan"), "method": None,
                                                      "raw_wins": 0, "raw_losses": 0}
    t["edge_cells"] = sum(bool(d.get("edge")) for d in diffs)
    t["method"] = diffs[0].get("adjust_method") if diffs else None
    return t


def tallies_by(diffs, key: str, names) -> dict:
    """``{name: tally of the diffs whose d[key] == name}``."""
    return {n: tally([d for d in diffs if d[key] == n]) for n in names}


def bounded_below(diffs, margin: float = EFFECT) -> int:
    """How many comparisons have their interval's upper end below ``margin`` (an advantage of ``a`` smaller
    than the margin, if any)."""
    return sum(d["hi"] < margin for d in diffs)


def negligible(d, margin: float = EFFECT) -> bool:
    """The interval lies inside ``(−margin, margin)``: equivalence (two one-sided tests at 2.5 % each)."""
    return d["lo"] > -margin and d["hi"] < margin


def ahead_of(tl: dict) -> bool:
    """ALLoRA is "ahead" when its significant wins outnumber its significant losses."""
    return tl["wins"] > tl["losses"]


def advantage_verdict(n: int, wins: int, losses: int, bounded: int) -> str:
    """The rule of an "a beats b" claim over ``n`` comparisons (``bounded``: those whose interval's upper end
    is below the margin): supported if ``W >= 2n/3`` (the paper's 18/27) and ``L <= n/9``; partly supported if
    ``W >= n/4`` and ``W > L``; not supported if ``W <= L`` or ``bounded >= n/2``; otherwise inconclusive.

    >>> advantage_verdict(24, 1, 0, 16), advantage_verdict(24, 6, 1, 16), advantage_verdict(24, 1, 0, 11)
    ('not supported', 'partly supported', 'inconclusive')
    """
    if wins >= 2 * n / 3 and losses <= n / 9:
        return "supported"
    if wins >= n / 4 and wins > losses:
        return "partly supported"
    if wins <= losses or bounded >= n / 2:
        return "not supported"
    return "inconclusive"


ADVANTAGE_RULE = ("With N comparisons, W significant wins and L significant losses (after Holm; edge cells "
                  "count as ties) and B comparisons whose 95% interval's upper end is below {m:g} points (the "
                  "paper's headline effect): supported if W >= 2N/3 (the paper's 18/27) and L <= N/9; partly "
                  "supported if W >= N/4 and W > L; not supported if W <= L, or if B >= N/2 (an advantage, if "
                  "any, bounded below the margin in at least half the comparisons); otherwise inconclusive.")


# -- tables ----------------------------------------------------------------------------------------------


def diff_table(diffs) -> str:
    """Markdown table of comparisons: both means ± std, the difference with its interval and decision."""
    rows = []
    for d in diffs:
        edge = "edge: " + ("a" if d["edge_a"] else "") + ("b" if d["edge_b"] else "") if d["edge"] else ""
        rows.append([d["cell"], d["a"], f"{d['mean_a']:.3g} ± {d['std_a']:.2g}", d["b"],
                     f"{d['mean_b']:.3g} ± {d['std_b']:.2g}", stats.ci_text(d), edge,
                     f"{d['failures_a']}/{d['failures_b']}"])
    head = ["cell (task/budget/opt)", "a", "a: mean ± std", "b", "b: mean ± std",
            "a − b [95% CI], draws, p_holm, result", "lr at edge", "failed runs a/b"]
    return stats.markdown_table(head, rows)


def budget_rows(res: dict, methods, tasks, budget: protocol.Budget) -> list[dict]:
    """Per method: its tuning budget (runs) and how often its selected setting was interior."""
    base = budget.lr_points * budget.tune_seeds * budget.draws
    rows = []
    for m in methods:
        ran = [t for t in tasks if m in res[t]]
        es = [entry(res[t][m], c) for t in ran for c in cells((t,))]
        if not es:
            rows.append({"method": m, "tasks": [], "base_tuning_runs": base})
            continue
        shapes = {t: tasks_lib.layer_shapes(protocol.make_task(t)) for t in ran}
        params = {t: methods_lib.trainable_parameters(m, protocol.make_task(t).rank, shapes[t], budget.long)
                  for t in ran}
        rows.append({"method": m, "tasks": ran, "not_applicable": [t for t in tasks if t not in ran],
                     "base_tuning_runs": base,
                     "mean_tuning_runs": float(np.mean([e["tuning_runs"] for e in es])),
                     "max_tuning_runs": int(max(e["tuning_runs"] for e in es)),
                     "cells": len(es), "interior": sum(not e["at_edge"] for e in es),
                     "picked_at_base_edge": sum(e["lr_at_edge"] for e in es),
                     "still_at_edge": sum(e["at_edge"] for e in es),
                     "failed_final_runs": int(sum(e["n_failed"] for e in es)),
                     "final_runs": int(sum(len(e["scores"]) for e in es)), "parameters": params})
    return rows


def budget_table(rows) -> str:
    """The Markdown form of :func:`budget_rows`."""
    out = []
    for r in rows:
        if not r["tasks"]:
            out.append([r["method"], "—", r["base_tuning_runs"], "—", "—", "—", "—", "not applicable"])
            continue
        na = ", ".join(r["not_applicable"]) or "—"
        out.append([r["method"], ", ".join(f"{t}: {r['parameters'][t]}" for t in r["tasks"]),
                    r["base_tuning_runs"], f"{r['mean_tuning_runs']:.1f} (max {r['max_tuning_runs']})",
                    f"{r['interior']}/{r['cells']}", f"{r['picked_at_base_edge']}", f"{r['still_at_edge']}",
                    f"{r['failed_final_runs']}/{r['final_runs']} failed; n/a: {na}"])
    head = ["method", "trainable parameters (per task)", "base tuning runs per cell",
            "tuning runs per cell incl. grid extension", "selected lr interior (cells)",
            "picked at a base-grid edge (then extended)", "still at an edge", "final runs"]
    return stats.markdown_table(head, out)


def selected_lrs(res: dict) -> dict:
    """``{task: {method: {optimizer: {budget: lr}}}}``."""
    return {t: {m: {o: {b: res[t][m][o][b]["lr"] for b in protocol.BUDGETS} for o in protocol.OPTIMIZERS}
                for m in res[t]} for t in res}


def rownorm_metrics(model, base, frozen, params, data):
    """Trainer metrics of the escape / trajectory claims: the row norms of BA and ΔW itself."""
    return {"rownorms": allora_lib.product_row_norms(params.A, params.B),
            "delta": lora.delta(params, model.cfg)}


def tally_example(n=12, wins=0, losses=0, mean=0.0) -> dict:
    """A synthetic tally for VERDICT_EXAMPLES."""
    return {"n": n, "wins": wins, "ties": n - wins - losses, "losses": losses, "mean_difference": mean}


# -- figures ---------------------------------------------------------------------------------------


def plot_forest(diffs, title, xlabel="paired difference a − b (points), 95% t-interval"):
    """One horizontal interval per comparison; wins green, losses red, ties grey, edge cells hollow."""
    n = len(diffs)
    fig, ax = figure(figsize=(9, 0.2 * n + 1.6))
    y = np.arange(n)[::-1]
    for yi, d in zip(y, diffs):
        c = {1: "tab:green", -1: "tab:red", 0: "0.5"}[d["win"]]
        ax.plot([d["lo"], d["hi"]], [yi, yi], color=c, lw=2)
        ax.plot(d["mean"], yi, "o", color=c, ms=4, mfc="white" if d.get("edge") else c)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{d['a']} − {d['b']} · {d['cell']}" for d in diffs], fontsize=5 if n > 40 else 6)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.plot([], [], color="tab:green", label="win (Holm)")
    ax.plot([], [], color="tab:red", label="loss (Holm)")
    ax.plot([], [], color="0.5", label="tie")
    ax.plot([], [], "o", color="0.5", mfc="white", label="lr at a grid edge")
    legend(ax)
    return fig


def plot_tallies(per: dict, title: str, names=None, unit="cells"):
    """Bars: significant wins, ties and losses of ALLoRA against each method, and the mean difference.

    ``names``: the methods in the order to draw them (default: the order of ``per``, which a JSON record
    has sorted)."""
    from matplotlib.ticker import MaxNLocator

    names = list(per) if names is None else [n for n in names if n in per]
    fig, (ax, ax2) = figure(1, 2, figsize=(10, 4.2))
    x = np.arange(len(names))
    w = np.array([per[n]["wins"] for n in names])
    t = np.array([per[n]["ties"] for n in names])
    l = np.array([per[n]["losses"] for n in names])
    ax.bar(x, w, color="tab:green", label="ALLoRA wins (Holm)")
    ax.bar(x, t, bottom=w, color="0.7", label="ties (incl. edge cells)")
    ax.bar(x, l, bottom=w + t, color="tab:red", label="ALLoRA loses (Holm)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"number of {unit}")
    ax.set_title(title)
    ax2.bar(x, [per[n]["mean_difference"] if per[n]["mean_difference"] is not None else 0.0 for n in names],
            color="tab:blue")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xticks(x, names, rotation=30, ha="right")
    ax2.set_ylabel("mean paired difference\nALLoRA − method (points)")
    ax2.set_title("mean over cells")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig
