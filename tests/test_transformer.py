"""The transformer: finite-difference gradients (float64), base model at init for every LoRA init, adapters
equal merged weights on every projection, causal masking, classification heads, config errors, the
pre-training cache (npz without pickle), and a short vmapped LoRA / ALLoRA fine-tuning sweep."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from jax.test_util import check_grads

from toyllora import models, pretrain, train
from toyllora.config import LoraConfig
from toyllora.data import Data, sequences
from toyllora.harness import cli
from toyllora.models import transformer as tf
from toyllora.testing import rel_error, tol, x64
from toyllora.train import Trainer, grid

ARCH = tf.TransformerConfig(vocab=sequences.VOCAB_SIZE, width=16, heads=2, layers=2, mlp=24, max_len=16)
SMALL = ARCH.replace(layers=1, width=8, mlp=12)
ALL = tf.TARGETS


def _tokens(seed, n=3, T=16, vocab=ARCH.vocab):   # one shape for most tests: eager ops compile once
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, (n, T)), jnp.int32)


def _base(arch=ARCH, seed=0):
    return tf.init_base(jax.random.key(seed), arch)


def _reference(arch, base, X):
    full = tf.TransformerLoRA(None, arch)
    return full.apply(*full.init(jax.random.key(9), base), X)


# -- the forward pass ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [LoraConfig(rank=2, alpha=4.0, init=i) for i in ("init_a", "init_b", "pissa", "both")]
                         + [LoraConfig(rank=2, init="both", dora=True), LoraConfig(rank=2, scaling="rslora"),
                            LoraConfig(rank=2, method="allora", scaling="none")],
                         ids=["init_a", "init_b", "pissa", "both", "dora", "rslora", "allora"])
def test_output_equals_the_base_model_at_init(cfg):
    base, X = _base(), _tokens(0)
    m = tf.TransformerLoRA(cfg, ARCH, targets=ALL)
    frozen, params = m.init(jax.random.key(1), base)
    assert rel_error(m.apply(frozen, params, X), _reference(ARCH, base, X)) < tol(f32=1e-4, f64=1e-10)


@pytest.mark.parametrize("target", ALL)
def test_adapter_forward_equals_the_merged_weight_forward(target):
    base, X = _base(), _tokens(1)
    for cfg in (LoraConfig(rank=2, alpha=6.0, init="both"), LoraConfig(rank=2, init="both", dora=True)):
        m = tf.TransformerLoRA(cfg, ARCH, targets=(target,))
        frozen, params = m.init(jax.random.key(2), base)
        params = jax.tree.map(lambda a: 1.5 * a, params)   # DoRA: magnitudes away from the row norms
        merged = m.weights(frozen, params)
        out = m.apply(frozen, params, X)
        assert rel_error(out, _reference(ARCH, base, X)) > 1e-3          # the adapter does change the output
        assert rel_error(out, tf.TransformerLoRA(None, ARCH).apply({}, merged, X)) < tol(f32=1e-5, f64=1e-12)


@functools.lru_cache(maxsize=None)
def _adapted(head):
    """A model with non-zero adapters on every projection, and its weights (built once for all examples)."""
    arch = ARCH if head == "lm" else ARCH.replace(head="classify", n_classes=3)
    m = tf.TransformerLoRA(LoraConfig(rank=2, init="both"), arch, targets=ALL)
    return m, *m.init(jax.random.key(7), _base())


@given(seed=st.integers(0, 2 ** 16), T=st.sampled_from([8, 16]), pos=st.integers(0, 15))
def test_causal_masking_a_future_token_never_changes_an_earlier_position(seed, T, pos):
    pos = pos % (T - 1)                    # the position whose output must not move; the change comes after it
    m, frozen, params = _adapted("lm")
    X = _tokens(seed, T=T)
    change = np.random.default_rng(seed + 1).integers(pos + 1, T)
    Y = X.at[:, change].set((X[:, change] + 1) % ARCH.vocab)
    a, b = m.apply(frozen, params, X), m.apply(frozen, params, Y)
    np.testing.assert_allclose(a[:, :pos + 1], b[:, :pos + 1], rtol=0, atol=tol(f32=1e-6, f64=1e-14))
    assert not np.allclose(a[:, change:], b[:, change:])


def test_a_last_position_classifier_sees_the_whole_sequence():
    m, frozen, params = _adapted("classify")
    X = _tokens(0)
    for change in (0, 7, 15):
        Y = X.at[:, change].set((X[:, change] + 1) % ARCH.vocab)
        assert not np.allclose(m.apply(frozen, params, X), m.apply(frozen, params, Y))


def test_classification_heads_pooling_and_the_trained_head():
    base, X = _base(), _tokens(3)
    outs = {}
    for pool in ("last", "mean"):
        arch = ARCH.replace(head="classify", n_classes=2, pool=pool)
        m = tf.TransformerLoRA(LoraConfig(rank=2), arch)
        assert m.task == "classification"
        frozen, params = m.init(jax.random.key(4), base)
        assert params["cls_head"].shape == (2, ARCH.width) and "cls_head" not in frozen
        outs[pool] = m.apply(frozen, params, X)
        assert outs[pool].shape == (3, 2)
    assert rel_error(outs["mean"], outs["last"]) > 1e-3
    arch = ARCH.replace(head="classify", n_classes=2)
    frozen, params = tf.TransformerLoRA(LoraConfig(rank=2), arch, train_head=False).init(jax.random.key(4), base)
    assert "cls_head" in frozen and "cls_head" not in params
    np.testing.assert_array_equal(params["blocks"][0]["q"].B, 0.0)
    given_head = dict(base, cls_head=jnp.ones((2, ARCH.width)))
    _, p = tf.TransformerLoRA(None, arch).init(jax.random.key(4), given_head)
    np.testing.assert_array_equal(p["cls_head"], 1.0)
    d = sequences.task("count", n_train=8, n_val=2, n_test=2).data
    m = tf.TransformerLoRA(LoraConfig(rank=2), arch)
    fr, p = m.init(jax.random.key(4), base)
    assert np.isfinite(float(models.loss(m, fr, p, d.X, d.Y))) and 0 <= float(models.accuracy(m, fr, p, d.X, d.Y)) <= 1


def test_next_token_loss_ignores_unscored_positions():
    m = tf.TransformerLoRA(LoraConfig(rank=2), ARCH)
    fr, p = m.init(jax.random.key(0), _base())
    X = _tokens(5)
    Y = jnp.full(X.shape, sequences.IGNORE).at[:, 2].set(X[:, 3])
    logits = m.apply(fr, p, X)
    expected = models.xent(logits[:, 2], X[:, 3])
    assert rel_error(models.loss(m, fr, p, X, Y), expected) < tol(f32=1e-6, f64=1e-13)
    assert float(models.accuracy(m, fr, p, X, Y)) == float(jnp.mean(jnp.argmax(logits[:, 2], -1) == X[:, 3]))


# -- gradients (float64) ---------------------------------------------------------------------------------


@pytest.mark.skipif(not x64(), reason="finite differences need JAX_ENABLE_X64=1")
@pytest.mark.parametrize("finetune", ["lora", "dropout", "dora", "full", "classify"])
def test_gradients_agree_with_finite_differences(finetune):
    arch = ARCH.replace(head="classify", n_classes=3) if finetune == "classify" else ARCH
    cfg = {"lora": LoraConfig(rank=2, init="both"), "dropout": LoraConfig(rank=2, init="both", keep=0.8),
           "dora": LoraConfig(rank=2, init="both", dora=True), "full": None,
           "classify": LoraConfig(rank=2, init="both", dropout_site="bottleneck", keep=0.9)}[finetune]
    m = tf.TransformerLoRA(cfg, arch, targets=ALL)
    frozen, params = m.init(jax.random.key(3), _base(seed=1))
    X = _tokens(6)
    Y = jnp.array([0, 2, 1]) if finetune == "classify" else jnp.where(X % 3 == 0, sequences.IGNORE, (X + 1) % 7)
    key = jax.random.key(5)   # a fixed dropout mask: the loss is a deterministic function of params
    f = lambda p: models.loss(m, frozen, p, X, Y, train=True, key=key)
    if finetune == "dora":    # PEFT's DoRA detaches the row norm: its gradient is not the true one, on purpose
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(jax.grad(f)(params)))
        return
    check_grads(f, (params,), order=1, modes=["rev"], eps=1e-6, atol=1e-5, rtol=1e-5)


# -- configuration errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("make, field", [
    (lambda: tf.TransformerConfig(width=96, heads=5), "heads"),
    (lambda: tf.TransformerConfig(vocab=1), "vocab"),
    (lambda: tf.TransformerConfig(width=0), "width"),
    (lambda: tf.TransformerConfig(layers=True), "layers"),
    (lambda: tf.TransformerConfig(head="seq2seq"), "head"),
    (lambda: tf.TransformerConfig(pool="max"), "pool"),
    (lambda: tf.TransformerConfig(head="classify"), "n_classes"),
    (lambda: tf.TransformerConfig(n_classes=3), "n_classes"),
    (lambda: tf.TransformerLoRA(LoraConfig(rank=9), SMALL), "rank"),
    (lambda: tf.TransformerLoRA(LoraConfig(rank=9), ARCH.replace(mlp=8), targets=("mlp_out",)), "rank"),
    (lambda: tf.TransformerLoRA(LoraConfig(rank=2), SMALL, targets=("q", "gate")), "targets"),
    (lambda: tf.TransformerLoRA(LoraConfig(rank=2), SMALL, targets=()), "targets"),
    (lambda: tf.TransformerLoRA(LoraConfig(rank=2), SMALL, targets=("q", "q")), "targets"),
    (lambda: tf.TransformerLoRA(LoraConfig(rank=2), arch={"width": 8}), "arch"),
    (lambda: pretrain.TransformerPretraining(arch=SMALL.replace(vocab=10)), "arch"),
    (lambda: pretrain.TransformerPretraining(steps=10, block=3), "block"),
])
def test_bad_config_raises_naming_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        make()


def test_bad_tokens_raise_naming_the_field():
    m = tf.TransformerLoRA(None, SMALL)
    fr, p = m.init(jax.random.key(0), _base(SMALL))
    for X in (_tokens(0, T=17), jnp.ones((2, 3)), jnp.ones((2, 3, 1), jnp.int32)):
        with pytest.raises(ValueError, match="^X"):
            m.apply(fr, p, X)


def test_model_is_hashable_and_targets_become_a_tuple():
    a = tf.TransformerLoRA(LoraConfig(rank=2), SMALL, targets=["q", "v"])
    b = tf.TransformerLoRA(LoraConfig(rank=2), SMALL, targets=("q", "v"))
    assert a.targets == ("q", "v") and hash(a) == hash(b) and a == b
    assert tf.TransformerConfig.from_json(ARCH.to_json()) == ARCH


# -- pre-training cache ------------------------------------------------------------------------------------

TINY = pretrain.TransformerPretraining(arch=SMALL, steps=2, block=2, batch_size=4, warmup=1, n_train=16, n_test=8)


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    return out, pretrain.transformer(TINY, out=out, progress=False)


def test_npz_round_trip_without_pickle_and_cache_reuse(tiny_pretrained, monkeypatch):
    out, first = tiny_pretrained
    assert not first.cached and first.path.parent == out and first.path.suffix == ".npz"
    with np.load(first.path, allow_pickle=False) as f:
        assert "embed" in f.files and "blocks/0/q" in f.files and all(f[k].dtype != object for k in f.files)
    base, record = pretrain.load_transformer(first.path)
    assert jax.tree.structure(base) == jax.tree.structure(first.base)
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(first.base)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert record == first.record and record["cache_key"] == pretrain.transformer_cache_key(TINY)
    assert record["n_params"] == tf.n_params(base) and set(record["pretrain"]) == {
        "pretrain", *(f"pretrain/{t}" for t in sequences.PRETRAIN_TASKS)}
    assert all(0.0 <= v["acc"] <= 1.0 for v in {**record["pretrain"], **record["shifted"]}.values())
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == [f".{first.path.name}.lock"]    # no temporary file left; the (empty) pre-training lock stays
    monkeypatch.setattr(pretrain, "_pretrain", lambda *a: pytest.fail("a current file must be reused"))
    again = pretrain.transformer(TINY, out=out, progress=False)
    assert again.cached and again.record == first.record


def test_pretraining_lock_lets_one_process_at_a_time_in(tmp_path):
    """Two holders of the pre-training lock of one file (separate open files, as two worker processes have)
    never overlap: the second enters only after the first has left."""
    import threading
    import time

    events, inside = [], threading.Event()

    def hold(name):
        with pretrain._exclusive(tmp_path / "transformer.npz"):
            events.append((name, "in"))
            inside.set()
            time.sleep(0.2)
            events.append((name, "out"))

    first = threading.Thread(target=hold, args=("first",))
    first.start()
    inside.wait(10)
    second = threading.Thread(target=hold, args=("second",))
    second.start()
    first.join(10)
    second.join(10)
    assert events == [("first", "in"), ("first", "out"), ("second", "in"), ("second", "out")]


def test_stale_or_corrupt_file_is_pretrained_again(tiny_pretrained, tmp_path, monkeypatch):
    _, first = tiny_pretrained
    path = tmp_path / pretrain.transformer_file(TINY)
    calls = []

    def fake(settings, progress):
        calls.append(settings)
        return first.base, {}, {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "block_losses": []}

    monkeypatch.setattr(pretrain, "_pretrain", fake)
    pretrain.save_transformer(path, first.base, dict(first.record, cache_key="0" * 16))   # stale key
    assert not pretrain.transformer(TINY, out=tmp_path, progress=False).cached
    path.write_bytes(b"not an npz")
    assert not pretrain.transformer(TINY, out=tmp_path, progress=False).cached
    assert len(calls) == 2 and pretrain.transformer(TINY, out=tmp_path, progress=False).cached
    assert pretrain.transformer_file(pretrain.FULL_PRETRAINING) == "transformer.npz"
    assert pretrain.transformer_file(pretrain.FAST_PRETRAINING) == "transformer_fast.npz"
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="^out"):
        pretrain.transformer(TINY, out=tmp_path / "file.txt")


def test_cli_pretrain_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("keep me\n")
    assert cli.main(["pretrain", "--fast", "--out", str(tmp_path / "file.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("toyllora: error: out:")
    assert cli.main(["pretrain", "--fast", "--bogus"]) == 2
    assert (tmp_path / "file.txt").read_text() == "keep me\n"


# -- fine-tuning through the engine ----------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [LoraConfig(rank=2, alpha=4.0), LoraConfig(rank=2, method="allora", scaling="none")],
                         ids=["lora", "allora"])
def test_sweep_of_lora_and_allora_lowers_the_shifted_task_loss(tiny_pretrained, cfg):
    _, pre = tiny_pretrained
    data = sequences.shifted_mixture(0, n_train=24, n_val=4, n_test=24).data
    model = tf.TransformerLoRA(cfg, SMALL, targets=("q", "v"))
    tr = Trainer(model, optimizer="adam", steps=60, stride=20)
    h = tr.sweep(pre.base, data, grid(lr=[3e-2, 1e-1]), seeds=[0, 1])
    assert train._compiled_many(tr)._cache_size() == 1                     # one compiled, vmapped call
    m = h.metrics
    assert m["train_loss"].shape == (2, 2, 4) and (np.asarray(h.diverged_step) == -1).all()
    assert (m["train_loss"][..., -1] < 0.9 * m["train_loss"][..., 0]).all()
    assert (m["test_loss"][..., -1] < m["test_loss"][..., 0]).all()
    assert m["layer_norm_B"].shape == (2, 2, 4, 2 * SMALL.layers) and (m["norm_B"][..., 0] == 0).all()
    assert m["rownorms"].shape[-1] == 2 * SMALL.layers * SMALL.width
    assert (m["norm_B"][..., -1] > 0).all() and "test_acc" in m


def test_default_metrics_finds_adapters_anywhere_in_the_pytree():
    arch = ARCH.replace(head="classify", n_classes=2)
    m = tf.TransformerLoRA(LoraConfig(rank=2, init="both"), arch, targets=("k", "o"))
    frozen, params = m.init(jax.random.key(0), _base())
    layers = train.adapter_layers(params)
    assert [id(p) for p in layers] == [id(params["blocks"][l][t]) for l in range(2) for t in ("k", "o")]
    m = tf.TransformerLoRA(LoraConfig(rank=2, init="both"), ARCH, targets=("k", "o"))
    frozen, params = m.init(jax.random.key(0), _base())
    X = _tokens(8)
    data = Data(X, jnp.roll(X, -1, axis=1).at[:, -1].set(sequences.IGNORE), X, X)
    out = train.default_metrics(m, _base(), frozen, params, data)
    assert out["layer_norm_A"].shape == (4,) and out["rownorms"].shape == (4 * ARCH.width,) and "test_acc" in out
    np.testing.assert_allclose(out["norm_A"], np.sqrt(sum(np.sum(np.square(p.A)) for p in layers)), rtol=1e-5)
    full = tf.TransformerLoRA(None, ARCH)
    f0, p0 = full.init(jax.random.key(0), _base())
    assert float(train.default_metrics(full, _base(), f0, p0, data)["delta_norm"]) == 0.0
