"""lora.lora-plus-width: LoRA+'s claim — a learning-rate ratio lr_B / lr_A > 1 helps, and more so at larger width."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora import models, protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import EFFECT
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.protocol import tasks as tasks_lib
from toyllora.train import Trainer

STATEMENT = ("LoRA+ (Hayou et al. 2024): setting B's learning rate λ > 1 times A's makes LoRA learn better, and "
             "the benefit of λ > 1 over λ = 1 grows with the model width n (the optimal ratio scales with n).")
SOURCE = "extension"
FLAW = "allora"           # the ledger's flaws have no "lora"; LoRA+ is one of ALLoRA's baselines


@dataclasses.dataclass(frozen=True)
class Params:
    widths: tuple[int, ...] = (16, 32, 64, 128)    # d_in = d_out = n
    ratios: tuple[float, ...] = (1.0, 2.0, 4.0, 16.0, 64.0)
    lr_b_log2: tuple[float, ...] = tuple(float(e) for e in range(-10, 2))   # B's lr grid (A's = lr_B / λ)
    short: int = 25                # the two step budgets scored (each selects its own lr; short is a prefix)
    steps: int = 100
    tune_seeds: int = 2            # 1000·master + 100 + i, scored on validation
    final_seeds: int = 12          # 1000·master + 500 + i, scored on test (the same for every ratio: paired)
    n_train: int = 256
    n_test: int = 256
    shift_rank: int = 4
    noise: float = 0.1
    rank: int = 4
    alpha: float = 16.0


SETUP = Setup(full=Params(), fast=Params(widths=(16, 64), ratios=(1.0, 2.0, 16.0),
                                         lr_b_log2=(-8.0, -6.0, -4.0, -2.0, 0.0), short=20, steps=40,
                                         final_seeds=10))


def rule(p: Params) -> str:
    return (f"OLS teacher–student of width n ∈ {fmt(p.widths)} (d_in = d_out = n, shift rank {p.shift_rank}, "
            f"{p.n_train} training samples), LoRA rank {p.rank}, s = {fmt(p.alpha / p.rank)}, Adam, full batch, "
            f"scored after {p.short} and {p.steps} steps (each budget tuned on its own), ratio λ = lr_B / lr_A ∈ "
            f"{fmt(p.ratios)}. Every ratio gets the same tuning budget: B's learning rate 2^k for k ∈ "
            f"{fmt(p.lr_b_log2)} (A's = lr_B/λ) × {p.tune_seeds} tuning seeds, the best mean validation score "
            f"selected, then {p.final_seeds} fresh seeds scored on test (points = % of the base model's test loss removed). Control: λ = 1 (plain LoRA) under the same budget: each "
            "λ > 1 at each width is compared with it, paired by seed (exact sign-flip test, Holm over all "
            f"budgets × widths × ratios; a selection at an edge of the grid is a tie). λ helps at (budget, n) if "
            f"it wins and its mean benefit is at least {EFFECT:g} points (the project's margin); its benefit "
            "grows with width if its 95% t-interval at the largest width lies wholly above its interval at the "
            "smallest (same budget). supported if some λ > 1 helps at the largest width and its benefit grows "
            "with width; otherwise partly supported if some λ > 1 helps anywhere; not supported if none does.")


def _grid(p: Params):
    """Grid points (ratio-major): B's lr on the log2 grid, A's = lr_B / λ; all under Adam."""
    lr_b = 2.0 ** np.asarray(p.lr_b_log2)
    ratio = np.repeat(np.asarray(p.ratios, dtype=np.float64), len(lr_b))
    lr_a = np.tile(lr_b, len(p.ratios)) / ratio
    return {"lr": lr_a, "b_ratio": ratio, "adam": np.ones(len(lr_a))}


def budgets(p: Params) -> dict:
    """``{"short": steps, "long": steps}``."""
    return {"short": p.short, "long": p.steps}


def width_runs(p: Params, seed: int, k: int) -> dict:
    """Tune every ratio on validation and score its pick on test, at width ``p.widths[k]``, for each budget."""
    n = p.widths[k]
    t = teacher_student(seed=1000 * seed + k, d_in=n, d_out=n, n_train=p.n_train, n_test=p.n_test,
                        shift_rank=p.shift_rank, noise=p.noise)
    tr = Trainer(models.LinearLoRA(LoraConfig(rank=p.rank, alpha=p.alpha)), optimizer=protocol.ProtocolOptimizer(),
                 steps=p.steps, stride=p.short, metrics=tasks_lib.metrics)
    tune = [1000 * seed + 100 + i for i in range(p.tune_seeds)]
    final = [1000 * seed + 500 + i for i in range(p.final_seeds)]
    g = _grid(p)
    h = tr.sweep(t.W0, t.data_val, g, tune)
    hf = None
    m = len(p.lr_b_log2)
    out = {"width": n}
    picks = {}
    for name, T in budgets(p).items():
        val, failed = tasks_lib.score_runs("regression", h.metrics, h.diverged_step, T // p.short, T)
        pick, edge = [], []
        for j in range(len(p.ratios)):
            rows = slice(j * m, (j + 1) * m)
            i = protocol.select(val[rows].mean(axis=1), failed[rows].sum(axis=1))
            pick.append(j * m + i)
            edge.append(bool(i in (0, m - 1)))
        picks[name] = pick
        out[name] = {"at_edge": edge, "val_scores": val.mean(axis=1).reshape(len(p.ratios), m).tolist()}
    rows = picks["short"] + picks["long"]
    sel = {key: np.asarray(v)[rows] for key, v in g.items()}
    hf = tr.sweep(t.W0, t.data, sel, final)
    for b, (name, T) in enumerate(budgets(p).items()):
        part = slice(b * len(p.ratios), (b + 1) * len(p.ratios))
        metrics = {key: np.asarray(v)[part] for key, v in hf.metrics.items()}
        test, tfailed = tasks_lib.score_runs("regression", metrics, np.asarray(hf.diverged_step)[part],
                                             T // p.short, T)
        out[name].update(lr_b=(sel["lr"] * sel["b_ratio"])[part].tolist(), scores=test.tolist(),
                         n_failed=tfailed.sum(axis=1).tolist())
    return out


def measure(p: Params, seed: int) -> dict:
    runs = [width_runs(p, seed, k) for k in range(len(p.widths))]
    diffs = []
    one = p.ratios.index(1.0)
    for name in budgets(p):
        for r in runs:
            s = np.asarray(r[name]["scores"])
            edge = r[name]["at_edge"]
            for j, lam in enumerate(p.ratios):
                if j == one:
                    continue
                d = stats.paired_difference(s[j], s[one])
                d.update(budget=name, width=r["width"], ratio=lam, edge=bool(edge[j] or edge[one]),
                         mean_a=float(s[j].mean()), mean_b=float(s[one].mean()))
                diffs.append(d)
    diffs = stats.compare_all(diffs, method="holm")
    for d in diffs:
        if d["edge"]:
            d["win"] = 0
    rows = [[d["budget"], d["width"], fmt(d["ratio"]), f"{d['mean_a']:.3g}", f"{d['mean_b']:.3g}", stats.ci_text(d),
             "edge" if d["edge"] else ""] for d in diffs]
    keep = ("budget", "width", "ratio", "mean", "lo", "hi", "p", "p_adjusted", "win", "edge", "mean_a", "mean_b")
    return {"widths": list(p.widths), "ratios": list(p.ratios), "runs": runs, "margin": EFFECT,
            "diffs": [{k: d[k] for k in keep} for d in diffs],
            "table_md": stats.markdown_table(["budget", "width n", "λ", "score λ", "score λ = 1",
                                              "λ − (λ = 1) [95% CI], p_holm, result", "lr at edge"], rows)}


def helps(d: dict, margin: float = EFFECT) -> bool:
    """A significant win (Holm) of at least ``margin`` points on average."""
    return d["win"] == 1 and d["mean"] >= margin


def grows(m: dict, ratio: float, budget: str) -> bool:
    """The benefit's interval at the largest width lies wholly above its interval at the smallest."""
    ds = {d["width"]: d for d in m["diffs"] if d["ratio"] == ratio and d["budget"] == budget}
    return ds[max(ds)]["lo"] > ds[min(ds)]["hi"]


def verdict(m: dict) -> str:
    widest = max(d["width"] for d in m["diffs"])
    helping = [d for d in m["diffs"] if helps(d)]
    if not helping:
        return "not supported"
    at_widest = [d for d in helping if d["width"] == widest]
    return "supported" if any(grows(m, d["ratio"], d["budget"]) for d in at_widest) else "partly supported"


def plot(record: dict):
    """Benefit of each ratio λ > 1 over λ = 1 (test points, 95% interval) against width, per budget."""
    data = record["measurements"]
    names = list(dict.fromkeys(d["budget"] for d in data["diffs"]))
    fig, axes = figure(1, len(names), figsize=(5.5 * len(names), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names):
        for k, lam in enumerate(r for r in data["ratios"] if r != 1.0):
            ds = sorted((d for d in data["diffs"] if d["ratio"] == lam and d["budget"] == name),
                        key=lambda d: d["width"])
            w = np.asarray([d["width"] for d in ds], dtype=float) * (1 + 0.03 * k)
            err = [[d["mean"] - d["lo"] for d in ds], [d["hi"] - d["mean"] for d in ds]]
            ax.errorbar(w, [d["mean"] for d in ds], yerr=err, marker="o", capsize=3, label=f"λ = {lam:g}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("width n")
        ax.set_title(f"LoRA+ benefit over λ = 1, {name} budget")
        legend(ax)
    axes[0].set_ylabel("score(λ) − score(λ = 1), test points")
    return fig


def _d(width, ratio, win, lo, hi, mean=None, budget="short"):
    return {"budget": budget, "width": width, "ratio": ratio, "win": win, "lo": lo, "hi": hi,
            "mean": (lo + hi) / 2 if mean is None else mean}


VERDICT_EXAMPLES = [
    ({"diffs": [_d(16, 2.0, 0, -1, 1), _d(128, 2.0, 1, 1.01, 3)]}, "supported"),        # lo(128) > hi(16)
    ({"diffs": [_d(16, 2.0, 0, -1, 1), _d(128, 2.0, 1, 1.0, 3)]}, "partly supported"),  # lo(128) = hi(16)
    ({"diffs": [_d(16, 2.0, 1, 2, 4), _d(128, 2.0, 0, -1, 5)]}, "partly supported"),    # helps only at n = 16
    ({"diffs": [_d(16, 4.0, 0, -1, 1), _d(128, 4.0, 0, 2, 5), _d(16, 2.0, 0, -1, 1), _d(128, 2.0, 1, 0.5, 2)]},
     "partly supported"),   # λ = 4 grows but does not win; the winner λ = 2 does not grow
    ({"diffs": [_d(16, 2.0, 0, -0.1, 0.1, budget="long"), _d(128, 2.0, 1, 0.2, 0.5, mean=0.33, budget="long")]},
     "supported"),          # a mean benefit of exactly the margin
    ({"diffs": [_d(16, 2.0, 0, -0.1, 0.1), _d(128, 2.0, 1, 0.2, 0.5, mean=0.32)]},
     "not supported"),      # a significant win below the margin does not help
    ({"diffs": [_d(16, 2.0, 0, -1, 1), _d(128, 2.0, -1, -3, -1)]}, "not supported"),
    ({"diffs": [_d(16, 2.0, 0, -1, 1), _d(128, 2.0, 0, -1, 3)]}, "not supported"),
]
