"""What the ALLoRA head-to-head claims share: the paper's numbers, the paired comparisons and their tables,
the protocol runs, and the forest / tally figures.

Scores are points (higher is better; see :mod:`toyllora.protocol`). A "win" counts only when the bootstrap
95 % CI of the mean paired difference (paired by seed) excludes 0. A *cell* is one (task, budget,
optimizer). The paper's numbers: +0.33 mean over LoRA, ALLoRA ahead in 18 of 27; family ablation +0.36
(ALLoRA-OD), +1.10 (ASF-LoRA), +0.93 (LoRA×eta); ALLoRA+D ≈ ALLoRA (+0.06 for ALLoRA); an advantage at every
rank.
"""

from __future__ import annotations

import numpy as np

from toyllora import allora as allora_lib
from toyllora import lora, protocol
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

PAPER = {"vs_lora_mean": 0.33, "vs_lora_ahead": 18, "vs_lora_n": 27,
         "family": {"allora-OD": 0.36, "asf": 1.10, "lora-x-eta": 0.93}, "dropout_neutral": 0.06}
ALLORA_ETAS = ("allora-eta2=1", "allora-eta2=2", "allora")  # eta² = 1, 2, 4 (protocol.ETA2)
EFFECT = 0.33  # points: the paper's headline effect, the size below which a difference is called negligible


def eta2_text(methods) -> str:
    """The eta² of ALLoRA protocol methods as rule text: ``{1, 2, 4}``."""
    return "{" + ", ".join(f"{protocol.ETA2[m]:g}" for m in methods) + "}"


def cell_name(cell) -> str:
    return "/".join(cell)


def run_protocol(methods, seed: int, budget: protocol.Budget, tasks) -> dict:
    """``results[task][method][optimizer]`` of :func:`protocol.run` (duplicate methods dropped, order kept)."""
    return protocol.run(tuple(dict.fromkeys(methods)), seed=seed, budget=budget, tasks=tasks)


def compare(results, a: str, b: str, seed: int = 0) -> list[dict]:
    """Paired differences ``a − b`` in every cell, with bootstrap CIs (seeded)."""
    out = []
    for i, cell in enumerate(protocol.cells(results)):
        d = stats.paired_difference(protocol.scores(results, a, cell), protocol.scores(results, b, cell),
                                    seed=seed + i)
        t, bud, o = cell
        d.update(cell=cell_name(cell), a=a, b=b,
                 failures_a=results[t][a][o][bud]["n_failed"], failures_b=results[t][b][o][bud]["n_failed"])
        out.append(d)
    return out


def diff_table(results, pairs, seed=0) -> tuple[str, list[dict]]:
    """Markdown table of per-cell comparisons (a vs b): both mean ± std, CI of the difference, win."""
    rows, diffs = [], []
    for a, b in pairs:
        for d, cell in zip(compare(results, a, b, seed), protocol.cells(results)):
            sa, sb = protocol.scores(results, a, cell), protocol.scores(results, b, cell)
            rows.append([d["cell"], a, stats.mean_std(sa), b, stats.mean_std(sb), stats.ci_text(d),
                         f"{d['failures_a']}/{d['failures_b']}"])
            diffs.append(d)
    head = ["cell (task/budget/opt)", "a", "a: mean ± std", "b", "b: mean ± std",
            "a − b [95% CI] result", "failures a/b"]
    return stats.markdown_table(head, rows), diffs


def summary_table(results, methods, refs=("lora", "allora"), seed=0) -> str:
    """One row per method: mean score over cells, and W/T/L (significant) against each reference."""
    rows = []
    for m in methods:
        cells = protocol.cells(results)
        mean = np.mean([protocol.scores(results, m, c).mean() for c in cells])
        fails = sum(results[t][m][o][b]["n_failed"] for t, b, o in cells)
        edge = sum(results[t][m][o][b]["lr_at_edge"] for t, b, o in cells)
        row = [m, protocol.METHODS[m], f"{mean:.2f}", str(fails), f"{edge}/{len(cells)}"]
        for r in refs:
            if r == m or r not in next(iter(results.values())):
                row.append("—")
                continue
            tl = stats.tally(compare(results, m, r, seed))
            row.append(f"{tl['wins']}/{tl['ties']}/{tl['losses']} ({tl['mean_difference']:+.2f})")
        rows.append(row)
    head = ["method", "what", "mean points over cells", "failed runs", "lr at grid edge"]
    head += [f"vs {r}: W/T/L (mean diff)" for r in refs]
    return stats.markdown_table(head, rows)


def tallies_by(diffs, key: str, names) -> dict:
    """``{name: stats.tally of the diffs whose d[key] == name}`` (key "a" or "b")."""
    return {n: stats.tally([d for d in diffs if d[key] == n]) for n in names}


def ahead_of(tl: dict) -> bool:
    """ALLoRA is "ahead" when its significant wins outnumber its significant losses."""
    return tl["wins"] > tl["losses"]


def rownorm_metrics(model, base, frozen, params, data):
    """Trainer metrics of the escape / trajectory claims: the row norms of BA and ΔW itself."""
    return {"rownorms": allora_lib.product_row_norms(params.A, params.B),
            "delta": lora.delta(params, model.cfg)}


def tally_example(n=12, wins=0, losses=0, mean=0.0) -> dict:
    """A synthetic :func:`stats.tally` for VERDICT_EXAMPLES."""
    return {"n": n, "wins": wins, "ties": n - wins - losses, "losses": losses, "mean_difference": mean}


# -- figures ---------------------------------------------------------------------------------------


def plot_forest(diffs, title, xlabel="paired difference a − b (points), 95% bootstrap CI"):
    """One horizontal CI bar per comparison; wins green, losses red, ties grey (legend beside the axes)."""
    n = len(diffs)
    fig, ax = figure(figsize=(9, 0.22 * n + 1.6))
    y = np.arange(n)[::-1]
    for yi, d in zip(y, diffs):
        c = {1: "tab:green", -1: "tab:red", 0: "0.5"}[d["win"]]
        ax.plot([d["lo"], d["hi"]], [yi, yi], color=c, lw=2)
        ax.plot(d["mean"], yi, "o", color=c, ms=4)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{d['a']} − {d['b']} · {d['cell']}" for d in diffs], fontsize=6)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.plot([], [], color="tab:green", label="win (CI > 0)")
    ax.plot([], [], color="tab:red", label="loss (CI < 0)")
    ax.plot([], [], color="0.5", label="tie")
    legend(ax)
    return fig


def plot_tallies(per: dict, title: str, names=None):
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
    ax.bar(x, w, color="tab:green", label="ALLoRA wins (CI > 0)")
    ax.bar(x, t, bottom=w, color="0.7", label="ties")
    ax.bar(x, l, bottom=w + t, color="tab:red", label="ALLoRA loses (CI < 0)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("number of cells")
    ax.set_title(title)
    ax2.bar(x, [per[n]["mean_difference"] for n in names], color="tab:blue")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xticks(x, names, rotation=30, ha="right")
    ax2.set_ylabel("mean paired difference\nALLoRA − method (points)")
    ax2.set_title("mean over cells")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig
