"""Flaw 2 claims: gradient asymmetry at the start, the Hessian cases, the metrics and the verdict rules."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from toyllora import models
from toyllora.theory import dynamics, hessian
from toyllora.claims.zeroinit import _common, balance, dropout_escape, escape_time, gradient_asymmetry
from toyllora.claims.zeroinit import hessian as hessian_claim
from toyllora.claims.zeroinit import unfair_regularization
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.harness import io


@pytest.mark.parametrize("site", gradient_asymmetry.SITES)
def test_gradient_asymmetry_at_init(site):
    """init_a: ∂L/∂A is exactly 0 and ∂L/∂B is not; init_b: the roles swap (with dropout at every site)."""
    p = gradient_asymmetry.SETUP.full
    gA, gB = gradient_asymmetry.gradients_at_init(0, "init_a", site, p)
    assert np.all(gA == 0.0) and np.linalg.norm(gB) > 0
    gA, gB = gradient_asymmetry.gradients_at_init(0, "init_b", site, p)
    assert np.all(gB == 0.0) and np.linalg.norm(gA) > 0


@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([3, 8, 20]))
def test_gradient_closed_form_at_zero(seed, n):
    """At B = 0: ∂L/∂B = s G Aᵀ with G = (1/n)(X(W + sBA)ᵀ − Y)ᵀ X, and ∂L/∂A = s Bᵀ G = 0."""
    t = teacher_student(seed=seed % 1000, d_in=5, d_out=3, n_train=n, n_test=4, shift_rank=2)
    cfg = LoraConfig(rank=2, alpha=3.0)
    model = models.LinearLoRA(cfg)
    frozen, p = model.init(jax.random.key(seed % 1000), t.W0)
    g = jax.grad(lambda q: models.loss(model, frozen, q, t.data.X, t.data.Y))(p)
    X, Y = t.data.X, t.data.Y
    G = (X @ frozen.T - Y).T @ X / n
    np.testing.assert_allclose(g.B, cfg.s * G @ p.A.T, rtol=1e-4, atol=1e-6 * float(jnp.abs(G).max()))
    assert np.all(np.asarray(g.A) == 0.0)


def test_hessian_cases_match_the_formula():
    base = hessian_claim.base_case(hessian_claim.SETUP.full)
    for kw in ({}, {"n": 4}, {"noise": 0.0, "shift_rank": 1}, {"init": "init_b"}):
        c = hessian_claim.hessian_case(0, **{**base, **kw})
        assert c["formula_holds"], (kw, c)
        assert c["negative"] + c["zero"] + c["positive"] == c["params"]
    pissa = hessian_claim.hessian_case(0, **{**base, "init": "pissa"})
    assert "formula_holds" not in pissa and pissa["zero"] == 0


def test_progress_and_balance_metrics():
    task = _common.toy_task(_common.Toy(), 0)
    W0, T = np.asarray(task.W0, np.float64), np.asarray(task.delta, np.float64)
    A, B = dynamics.aligned_start(T, 2, 1.0, 0.0)
    U, S, Vt = np.linalg.svd(T)
    A_end, B_end = Vt[:2], U[:, :2] * S[:2]                     # B A = T exactly, AAᵀ = I
    run = {"A": np.stack([A, A_end])[None], "B": np.stack([B, B_end])[None], "W": W0[None]}
    np.testing.assert_allclose(_common.progress(run, task)[0], [0.0, 1.0], atol=1e-12)
    drift = balance.balance_drift(run)[0]
    expected = np.linalg.norm(-np.diag(S[:2] ** 2)) / np.linalg.norm(np.eye(2))
    np.testing.assert_allclose(drift, [0.0, expected], rtol=1e-10)


def _cell(zeros_mean, zeros_sum, a_zero, pissa_zero):
    sweep = lambda zs: [{"zero": z} for z in zs]
    return {"by_init": {"init_a": {"zero": a_zero}, "pissa": {"zero": pissa_zero}},
            "n_sweep": {"mean": sweep(zeros_mean), "sum": sweep(zeros_sum)}}


def test_verdict_rules():
    """Every verdict on measurements as recorded (JSON: inf and nan are None)."""
    rec = lambda m: json.loads(io.dumps(m))
    assert hessian_claim.verdict(rec(_cell([8, 4, 4], [8, 4, 4], 4, 0))) == "supported"
    assert hessian_claim.verdict(rec(_cell([4, 4, 4], [4, 4, 4], 4, 0))) == "partly supported"
    assert hessian_claim.verdict(rec(_cell([8, 4, 4], [8, 4, 4], 0, 0))) == "not supported"
    esc = lambda s, a: rec({"allora_vs_lora": {"SGD": {"allora_escape": 10 * s, "lora_at_eta_lb_escape": 10.0,
                                                       "ratio_allora_over_lora_matched": s},
                                               "Adam": {"allora_escape": 10 * a, "lora_at_eta_lb_escape": 10.0,
                                                        "ratio_allora_over_lora_matched": a}}})
    assert escape_time.verdict(esc(0.4, 0.5)) == "supported"
    assert escape_time.verdict(esc(0.4, 1.0)) == "partly supported"
    assert escape_time.verdict(esc(1.3, 2.0)) == "not supported"
    assert escape_time.verdict(esc(np.inf, 2.0)) == "inconclusive"
    bal = lambda gd, adam: rec({"gd_drift_by_lr": dict(zip(("0.01", "0.03", "0.1"), gd)), "adam_drift": adam})
    assert balance.verdict(bal([0.01, 0.02, 0.05], 1.0)) == "supported"
    assert balance.verdict(bal([0.01, 0.02, 0.05], 0.02)) == "partly supported"
    assert balance.verdict(bal([0.2, 0.3, 0.5], 5.0)) == "not supported"
    drop = lambda xs, base=25.0: rec({"cells": {str(i): {"0.0": {"escape": {"median": base}},
                                                         "slowdown_at_max_drop": x} for i, x in enumerate(xs)}})
    assert dropout_escape.verdict(drop([1.2, 1.1, 1.3, 2.0])) == "supported"
    assert dropout_escape.verdict(drop([1.2, 1.1, 1.3, np.inf])) == "supported"   # never escaped with dropout
    assert dropout_escape.verdict(drop([1.2, 1.0, 1.0, 1.0])) == "partly supported"
    assert dropout_escape.verdict(drop([1.0, 1.0, 0.9, 1.05])) == "not supported"
    assert dropout_escape.verdict(drop([float("nan")] * 4, base=np.inf)) == "inconclusive"
    unf = lambda a, b: rec({"sites": {"input": {"spread_A": a, "spread_B": b}, "bottleneck": {"spread_A": a,
                                                                                              "spread_B": b}}})
    assert unfair_regularization.verdict(unf(0.3, 6.0)) == "supported"
    assert unfair_regularization.verdict(unf(0.2, 0.45)) == "partly supported"
    assert unfair_regularization.verdict(unf(0.5, 0.3)) == "not supported"


def test_escape_methods_cover_the_issue():
    runs = _common.EscapeRuns()
    methods, aligned = _common.escape_methods(runs)
    names = " ".join(m[0] for m in methods)
    for word in ("LoRA SGD", "LoRA Adam", "LoRA+", "scaled GD", "init_b", "PiSSA", "ALLoRA SGD", "ALLoRA Adam"):
        assert word in names
    allora = [r for n, _, r in methods if n.startswith("ALLoRA SGD")][0]
    assert allora.allora == 1.0 and allora.lr * runs.eta == runs.sgd_lrs[-1]  # LoRA at eta·l_b exists
    assert len(aligned) == 5


def test_pissa_start_has_the_same_output():
    """The PiSSA start of the toy keeps the base model (frozen residual), so its learned shift starts at 0."""
    toy = _common.Toy()
    task = _common.toy_task(toy, 0)
    W, A, B = _common.start(task, "pissa", 0, toy.rank)
    np.testing.assert_allclose(W + B @ A, np.asarray(task.W0), atol=1e-5)
    assert hessian.numerical_rank(B) == toy.rank == hessian.numerical_rank(A)  # neither is zero
