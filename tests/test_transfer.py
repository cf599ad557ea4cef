"""The transfer rung's shared protocol (toyllora/claims/transfer/_common.py) and the ripple claim's pieces."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toyllora import pretrain
from toyllora.claims.transfer import _common as T
from toyllora.claims.transfer import ripple
from toyllora.models import transformer as tf
from toyllora.precision import tol

TINY_ARCH = tf.FAST.replace(width=16, heads=2, layers=2, mlp=32)
TINY = pretrain.TransformerPretraining(arch=TINY_ARCH, steps=4, block=2, batch_size=4, warmup=1, n_train=16,
                                       n_test=8)
BUDGET = T.Budget(fast=True, steps=4, stride=2, batch=4, n_train=8, n_val=8, n_test=8, draws=2, tune_seeds=1,
                  score_seeds=2, lr_points=2, max_extend=1)


@pytest.fixture()
def tiny_base(tmp_path, monkeypatch):
    """The fast base model replaced by a 2-block, width-16 one pre-trained for 4 steps in a temporary folder."""
    monkeypatch.setattr(T, "PRETRAINING_FAST", TINY)
    monkeypatch.setenv(T.RESULTS_ENV, str(tmp_path))
    for f in (T.base_model, T.cell, T.make_trainer, ripple._trainer):
        f.cache_clear()
    yield T.base_model(True)
    for f in (T.base_model, T.cell, T.make_trainer, ripple._trainer):
        f.cache_clear()


@pytest.mark.parametrize("field,value", [("steps", 0), ("stride", 3), ("batch", 9), ("draws", 0),
                                         ("targets", ("q", "up"))])
def test_budget_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{'stride' if field == 'stride' else field}:"):
        dataclasses.replace(BUDGET, **{field: value})


def test_lr_grid_is_log2_and_shifts():
    g = T.lr_grid("adam", BUDGET)
    assert np.allclose(np.diff(np.log2(g)), 1.0)
    assert T.lr_grid("adam", BUDGET, shift=1)[0] == g[1]
    with pytest.raises(ValueError, match="^optimizer:"):
        T.lr_grid("lion", BUDGET)


def test_tuning_and_scoring_seeds_are_disjoint_across_draws_and_masters():
    b = dataclasses.replace(BUDGET, tune_seeds=3, score_seeds=4)
    seen = [s for m in (0, 1) for d in range(3) for s in T.tune_seeds(b, m, d) + T.score_seeds(b, m, d)]
    assert len(seen) == len(set(seen))


def test_task_data_holds_validation_then_test_disjoint():
    d = T.task_data("shifted", 3, 16, 8, 8)
    val, test = np.asarray(d.X_test[:8]), np.asarray(d.X_test[8:])
    train = {tuple(x) for x in np.asarray(d.X)}
    assert not ({tuple(x) for x in val} & {tuple(x) for x in test})
    assert not ({tuple(x) for x in test} & train)
    with pytest.raises(ValueError, match="^task:"):
        T.task_data("sst2", 0, 8, 8, 8)


def test_eval_split_cuts_the_evaluation_set_to_one_split():
    d = T.task_data("shifted", 3, 16, 8, 6)
    val, test = T.eval_split(d, 8, "val"), T.eval_split(d, 8, "test")
    assert val.X_test.shape[0] == 8 and test.X_test.shape[0] == 6
    np.testing.assert_array_equal(np.concatenate([val.Y_test, test.Y_test]), d.Y_test)
    assert val.X is d.X and test.Y is d.Y
    with pytest.raises(ValueError, match="^split:"):
        T.eval_split(d, 8, "train")


@pytest.mark.parametrize("method", ["lora", "allora"])
def test_a_stopped_run_records_the_first_records_of_the_full_run(tiny_base, method):
    """Scoring runs stop after the last budget they score: that must cost steps, never change a record."""
    b = dataclasses.replace(BUDGET, steps=6, stride=2)
    tr = T.make_trainer(method, "adam", "shifted", b)
    short = T.stopped_at(tr, 2)
    assert short.steps == 2 and T.stopped_at(tr, 6) is tr and T.stopped_at(tr, 8) is tr
    data = T.eval_split(T.task_data("shifted", 0, b.n_train, b.n_val, b.n_test), b.n_val, "test")
    full = tr.sweep(tiny_base.base, data, {"lr": np.array([0.01])}, [0, 1])
    part = short.sweep(tiny_base.base, data, {"lr": np.array([0.01])}, [0, 1])
    for key in ("loss", "acc"):
        assert part.metrics[key].shape[-1] == 2
        np.testing.assert_allclose(part.metrics[key], full.metrics[key][..., :2], rtol=tol(), atol=tol())


def test_cell_picks_on_validation_and_pairs_scores(tiny_base):
    c = T.cell("lora", "adam", "shifted", 0, BUDGET)
    R, n = len(BUDGET.records), BUDGET.draws * BUDGET.score_seeds
    assert c["points"].shape == (R, n) and c["acc"].shape == (R, n)
    assert all(lr in c["lrs"] for lr in c["pick"])
    # the pick of each record is the lowest mean validation loss of the tuning seeds
    assert [c["lrs"][i] for i in np.argmin(c["val"], axis=1)] == c["pick"]
    assert np.allclose(c["points"][0], 0.0, atol=1e-4)     # step 0 is the base model (B = 0)
    d = T.compare(c, c, BUDGET, name="self")
    assert d["mean"] == 0.0 and d["win"] == 0


def test_holm_makes_an_edge_comparison_a_tie():
    diffs = [{"mean": 5.0, "p": 1e-6, "win": 1, "edge": True, "consistent_over_groups": True},
             {"mean": 5.0, "p": 1e-6, "win": 1, "edge": False, "consistent_over_groups": True}]
    assert [d["win"] for d in T.holm(diffs)] == [0, 1]


def test_trace_matches_the_model_with_merged_weights():
    arch = TINY_ARCH
    base = tf.init_base(jax.random.key(0), arch)
    X = jnp.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    delta = 0.1 * jax.random.normal(jax.random.key(1), base["blocks"][1]["v"].shape)
    logits, scores = ripple._trace(arch, base, {(1, "v"): delta}, X)
    merged = dict(base, blocks=(base["blocks"][0], dict(base["blocks"][1], v=base["blocks"][1]["v"] + delta)))
    ref = tf.TransformerLoRA(None, arch).apply({}, merged, X)
    assert jnp.allclose(logits, ref, atol=tol(f32=1e-4, f64=1e-9), rtol=tol(f32=1e-4, f64=1e-9))
    assert len(scores) == arch.layers and scores[0].shape == (2, arch.heads, 5, 5)


def test_masked_optimizer_keeps_unadapted_blocks_at_the_base(tiny_base):
    tr = ripple._trainer(4.0, "1", "sgd", BUDGET)
    data = T.task_data("shifted", 0, BUDGET.n_train, BUDGET.n_val, BUDGET.n_test)
    h = tr.run(tiny_base.base, data, {"lr": 0.1}, seed=0)
    blocks = h.params["blocks"]
    assert all(float(jnp.abs(p.B).max()) == 0.0 for p in blocks[0].values())     # block 0 not adapted
    assert any(float(jnp.abs(p.B).max()) > 0.0 for p in blocks[-1].values())    # the last block learns


def test_sensitivity_is_zero_for_identical_scales():
    c = {"val": np.array([[1.0, 2.0]]), "points": np.array([[10.0, 20.0, 30.0]]), "at_edge": [False]}
    sens, best, worst = ripple._sensitivity({1.0: c, 16.0: dict(c)}, BUDGET)
    assert np.allclose(sens, 0.0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_lora_at_s1_with_every_block_adapted_is_the_protocols_lora_s1_d0(tiny_base, optimizer):
    """The ripple claims' LoRA at s = 1, depth L (a masked optimizer over every block) and the protocol's
    lora-s1-d0 run the same method, so the claims share that cell instead of running it twice."""
    from toyllora.config import LoraConfig

    plain = T.method_config("lora-s1-d0", BUDGET.rank)   # alpha is unused under a numeric scaling
    assert plain == dataclasses.replace(LoraConfig(rank=BUDGET.rank, scaling=1.0, keep=1.0), alpha=plain.alpha)
    masked = T.cell("masked-s1-L", optimizer, "shifted", 0, BUDGET, trainer=ripple._trainer(1.0, "L", optimizer, BUDGET))
    shared = ripple.lora_cell(1.0, "L", optimizer, 0, BUDGET)
    assert shared is T.cell("lora-s1-d0", optimizer, "shifted", 0, BUDGET)
    assert masked["pick"] == shared["pick"]
    for key in ("points", "val"):
        np.testing.assert_allclose(masked[key], shared[key], rtol=tol(), atol=100 * tol())
    assert ripple.lora_cell(16.0, "L", optimizer, 0, BUDGET) is not shared
