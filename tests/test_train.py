"""The compiled engine: sweeps equal single runs, divergence, LoRA+, mini-batches, sharding, errors."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toyllora import models, train
from toyllora.config import LoraConfig
from toyllora.data import Data, digits, teacher_student
from toyllora.train import Trainer, grid
from toyllora.testing import tol


@pytest.fixture(scope="module")
def task():
    return teacher_student(seed=0, d_in=8, d_out=4, n_train=32, n_test=16, shift_rank=2)


def test_sweep_equals_runs_one_at_a_time(task):
    tr = Trainer(models.LinearLoRA(LoraConfig(rank=2, keep=0.9)), optimizer="adam", steps=30, stride=10)
    hs = tr.sweep(task.W0, task.data, grid(lr=[0.01, 0.05]), seeds=[3, 4])
    for g, lr in enumerate([0.01, 0.05]):
        for s, seed in enumerate([3, 4]):
            h = tr.run(task.W0, task.data, {"lr": lr}, seed=seed)
            for k, v in h.metrics.items():
                np.testing.assert_allclose(hs.metrics[k][g, s], v, rtol=50 * tol(f32=1e-6, f64=1e-13),
                                           atol=1e-6 if v.dtype == np.float32 else 1e-12)


def test_no_recompilation_for_new_learning_rates_and_data(task):
    tr = Trainer(models.LinearLoRA(LoraConfig(rank=1)), optimizer="sgd", steps=10, stride=5)
    tr.run(task.W0, task.data, {"lr": 0.1}, seed=0)
    other = teacher_student(seed=1, d_in=8, d_out=4, n_train=32, n_test=16, shift_rank=2)
    tr.run(other.W0, other.data, {"lr": 0.2}, seed=1)
    assert train._compiled_single(tr)._cache_size() == 1


def test_training_reduces_loss_and_records_metrics(task):
    tr = Trainer(models.LinearLoRA(LoraConfig(rank=2, alpha=2.0)), optimizer="adam", steps=200, stride=50)
    h = tr.run(task.W0, task.data, {"lr": 0.05}, seed=0)
    m = h.metrics
    assert m["train_loss"].shape == (5,) and list(h.steps) == [0, 50, 100, 150, 200]
    assert float(m["train_loss"][-1]) < 0.05 * float(m["train_loss"][0])
    assert float(m["norm_B"][0]) == 0.0 and float(m["norm_B"][-1]) > 0
    assert m["rownorms"].shape == (5, 4) and int(h.diverged_step) == -1


def test_divergence_is_reported_with_its_step_and_no_nan(task):
    tr = Trainer(models.LinearLoRA(LoraConfig(rank=2, init="both")), optimizer="sgd", steps=40, stride=10)
    h = tr.run(task.W0, task.data, {"lr": 1e6}, seed=0)
    assert 0 <= int(h.diverged_step) < 40
    assert all(np.all(np.isfinite(np.asarray(v))) for v in h.metrics.values())
    ok = tr.run(task.W0, task.data, {"lr": 1e-3}, seed=0)
    assert int(ok.diverged_step) == -1


def test_lora_plus_ratio_scales_only_the_b_update(task):
    cfg = LoraConfig(rank=2, init="both")
    model = models.LinearLoRA(cfg)
    frozen, params = model.init(jax.random.key(0), task.W0)
    g = jax.grad(lambda p: models.loss(model, frozen, p, task.data.X, task.data.Y))(params)
    upd = {}
    for ratio in (1.0, 16.0):
        opt = train.make_optimizer("sgd", {"lr": jnp.asarray(0.1), "b_ratio": jnp.asarray(ratio)})
        upd[ratio], _ = opt.update(g, opt.init(params), params)
    np.testing.assert_allclose(upd[16.0].A, upd[1.0].A, rtol=1e-6)
    np.testing.assert_allclose(upd[16.0].B, 16.0 * upd[1.0].B, rtol=1e-5)


def test_mini_batches_and_classification_metrics():
    dg = digits(seed=0)
    base = models.init_mlp(jax.random.key(0), (64, 32, 10))
    tr = Trainer(models.MLPLoRA(None), optimizer="adam", steps=60, stride=30, batch_size=64)
    h = tr.run(base, dg.pretrain, {"lr": 3e-3}, seed=0)
    assert float(h.metrics["test_acc"][-1]) > float(h.metrics["test_acc"][0])
    full = Trainer(models.MLPLoRA(None), optimizer="adam", steps=60, stride=30).run(base, dg.pretrain, {"lr": 3e-3})
    assert float(full.metrics["train_loss"][-1]) != float(h.metrics["train_loss"][-1])


@pytest.mark.parametrize("kwargs, field", [
    (dict(optimizer="lion"), "optimizer"), (dict(steps=0), "steps"), (dict(steps=10, stride=3), "stride"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_trainer_settings_raise(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        Trainer(models.LinearLoRA(LoraConfig(rank=1)), **kwargs)


def test_bad_data_and_hyper_parameters_raise(task):
    tr = Trainer(models.LinearLoRA(LoraConfig(rank=1)), optimizer="sgd", steps=10, stride=5)
    bad = task.data._replace(X=task.data.X.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="^X: contains non-finite"):
        tr.run(task.W0, bad, {"lr": 0.1})
    with pytest.raises(ValueError, match="^Y: needs one row"):
        tr.run(task.W0, task.data._replace(Y=task.data.Y[:3]), {"lr": 0.1})
    with pytest.raises(ValueError, match="^X: must be a non-empty"):
        tr.run(task.W0, task.data._replace(X=task.data.X[:0], Y=task.data.Y[:0]), {"lr": 0.1})
    with pytest.raises(ValueError, match="^hp: unknown"):
        tr.run(task.W0, task.data, {"lr": 0.1, "beta": 1.0})
    with pytest.raises(ValueError, match="^hp_grid"):
        tr.sweep(task.W0, task.data, {"lr": [0.1, 0.2], "b_ratio": [1.0]}, seeds=2)


def test_sweep_shards_over_several_devices():
    """Four fake CPU devices: the sharded sweep equals the single-device numbers."""
    code = textwrap.dedent("""
        import jax, numpy as np
        from toyllora import models
        from toyllora.config import LoraConfig
        from toyllora.data import teacher_student
        from toyllora.train import Trainer, grid
        assert jax.device_count() == 4, jax.devices()
        t = teacher_student(seed=0, d_in=8, d_out=4, n_train=32, n_test=16, shift_rank=2)
        tr = Trainer(models.LinearLoRA(LoraConfig(rank=2)), optimizer="adam", steps=20, stride=10)
        h = tr.sweep(t.W0, t.data, grid(lr=[0.01, 0.03, 0.1]), seeds=[0, 1])
        np.save("OUT", h.metrics["train_loss"])
    """)
    outs = {}
    for n in (1, 4):
        path = f"/tmp/toyllora_shard_{os.getpid()}_{n}.npy"
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        src = code.replace("OUT", path) if n == 4 else code.replace("OUT", path).replace("== 4", "== 1")
        subprocess.run([sys.executable, "-c", src], check=True, env=env, capture_output=True, timeout=300)
        outs[n] = np.load(path)
        os.unlink(path)
    np.testing.assert_allclose(outs[4], outs[1], rtol=tol(f32=1e-4, f64=1e-10))  # sharded sums reorder


def test_a_sweep_computes_the_same_optimized_and_with_most_optimizations_off(task):
    """The suite compiles with most XLA optimizations off (tests/conftest.py), the full run optimized: both
    settings give the same training history, so what the suite checks holds for the record."""
    from toyllora.harness.registry import xla_optimizations

    runs = {}
    try:
        for off in (False, True):
            with xla_optimizations(not off):
                jax.clear_caches()    # the flag is not part of the in-memory caches' key
                tr = Trainer(models.LinearLoRA(LoraConfig(rank=2, keep=0.9)), optimizer="adam", steps=30,
                             stride=10)
                runs[off] = tr.sweep(task.W0, task.data, grid(lr=[0.01, 0.05]), seeds=[3, 4])
    finally:
        jax.clear_caches()
    for k, v in runs[False].metrics.items():
        np.testing.assert_allclose(runs[True].metrics[k], v, rtol=50 * tol(f32=1e-6, f64=1e-13),
                                   atol=1e-6 if v.dtype == np.float32 else 1e-12)
