"""Pre-trained base models for the fine-tuning claims: the digits MLP, and the sequence transformer.

* :func:`digits_mlp`, cached in-process, serves every claim that fine-tunes the digits MLP (the dropout
  claims and the head-to-head ``digits`` task), so a (seed, setting) is pre-trained once per process.
* :func:`transformer` pre-trains :class:`toyllora.models.TransformerLoRA` once on the sequence mixture of
  :mod:`toyllora.data.sequences` and caches it on disk as ``.npz`` (no pickle) with its settings, a hash
  of settings and code, and its accuracies on the pre-training and the shifted tasks. Command:
  ``toyllora pretrain [--fast] [--out DIR]``. Measured on the shared 2-core machine (load average 6–8):
  full (412 k parameters, 1500 steps) 122 s of CPU time, 270 s wall (compile 6 s, 255 s training);
  fast (108 k, 300 steps) 11 s CPU, 16–23 s wall; loading a current file: 2.5 s CPU (mostly imports).
  The full base model's test token accuracy: 0.705 on the pre-training mixture (copy 1.00, reverse 1.00,
  add 0.52, sub 0.00, grammar 0.34 — most next words are a draw among 2–3) and 0.187 on the shifted one (mul 0.00,
  map 0.20, grammar_shifted 0.21). Held-out arithmetic pairs are not learned: the model memorizes the
  training table (train-split accuracy 1.0); ``add`` scores only through commutativity, ``sub`` answers
  ``b − a`` on unseen pairs.

Example:
    >>> from toyllora import pretrain
    >>> base, digits, acc = pretrain.digits_mlp(0, sizes=(64, 10), steps=20)
    >>> [W.shape for W, _ in base], digits.finetune.X.shape[1], 0.0 <= acc <= 1.0
    ([(10, 64)], 64, True)
"""

from __future__ import annotations

import contextlib

import dataclasses
import functools
import hashlib
import io as _bytes_io
import json
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import data as data_lib
from toyllora import models
from toyllora.data import sequences
from toyllora.models import transformer as transformer_lib
from toyllora.theory import dropout as dropout_theory
from toyllora.train import Trainer

LOSSES = ("xent", "mse")


def _onehot_mse(model, frozen, params, X, Y, key=None):
    """Squared loss on one-hot labels (the loss under which the last layer's dropout has a closed form)."""
    logits = model.apply(frozen, params, X)
    return models.mse(logits, dropout_theory.one_hot_targets(Y, logits.shape[-1], logits.dtype))


def _accuracy(model, base, frozen, params, data):
    return {"test_acc": models.accuracy(model, frozen, params, data.X_test, data.Y_test)}


@functools.lru_cache(maxsize=None)
def digits_mlp(seed: int = 0, *, sizes=(64, 64, 64, 10), steps: int = 400, lr: float = 1e-2, loss: str = "xent",
               n_pretrain: int = 1000, n_finetune: int = 256, n_val: int = 150):
    """The digits MLP pre-trained by full-batch Adam on the unshifted pre-training split (biases stay 0).

    Args:
      seed: the data split and the He init.
      sizes: layer widths ``(64, ..., 10)``.
      steps, lr: the pre-training budget and Adam's learning rate.
      loss: ``"xent"`` (soft-max cross-entropy) or ``"mse"`` (squared loss on one-hot labels).
      n_pretrain, n_finetune, n_val: the split sizes of :func:`toyllora.data.digits`.

    Returns:
      ``(base, digits, held_out_accuracy)``: ``base = ((W_1, b_1), ...)`` for :class:`toyllora.models.MLPLoRA`,
      the :class:`toyllora.data.Digits` splits, and the accuracy on the held-out pre-training images.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: unknown value {loss!r}; allowed: {LOSSES}")
    d = data_lib.digits(seed=seed, n_pretrain=n_pretrain, n_finetune=n_finetune, n_val=n_val)
    init = models.init_mlp(jax.random.key(seed), tuple(sizes))
    model = models.MLPLoRA(cfg=None)
    tr = Trainer(model, optimizer="adam", steps=steps, stride=steps, metrics=_accuracy,
                 objective=None if loss == "xent" else _onehot_mse)
    h = tr.run(init, d.pretrain, {"lr": lr}, seed=seed)
    base = tuple((W, b) for W, (_, b) in zip(h.params, init))
    return base, d, float(np.asarray(h.metrics["test_acc"])[-1])


# -- the sequence transformer -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TransformerPretraining:
    """How the base transformer is pre-trained (all of it is part of the cache key).

    AdamW with global-norm clipping; the learning rate warms up linearly over ``warmup`` steps, then
    follows a cosine to ``lr / 10``; mini-batches drawn with replacement; ``block`` steps per compiled
    ``lax.scan`` (one tick of the progress bar).
    """

    arch: transformer_lib.TransformerConfig = transformer_lib.DEFAULT
    steps: int = 1500
    block: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    clip: float = 1.0
    n_train: int = 8192
    n_test: int = 1024
    seed: int = 0

    def __post_init__(self):
        if self.arch.head != "lm":
            raise ValueError(f"arch: pre-training needs head='lm', got {self.arch.head!r}")
        if self.arch.vocab < sequences.VOCAB_SIZE or self.arch.max_len < sequences.SEQ_LEN:
            raise ValueError(f"arch: the sequence tasks need vocab >= {sequences.VOCAB_SIZE} and max_len >= "
                             f"{sequences.SEQ_LEN}, got {self.arch.vocab} and {self.arch.max_len}")
        for name in ("steps", "block", "batch_size", "n_train", "n_test"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if self.steps % self.block:
            raise ValueError(f"block: must divide steps = {self.steps}, got {self.block}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerPretraining":
        return cls(**dict(d, arch=transformer_lib.TransformerConfig(**d["arch"])))


FULL_PRETRAINING = TransformerPretraining()
FAST_PRETRAINING = TransformerPretraining(arch=transformer_lib.FAST, steps=300, block=50, batch_size=32,
                                          warmup=30, n_train=2048, n_test=512)
# The files whose source decides the pre-trained weights (their text is part of the cache key).
TRANSFORMER_SOURCES = ("models/transformer.py", "models/__init__.py", "data/sequences.py", "pretrain.py")


class PretrainedTransformer(NamedTuple):
    base: dict          # the base weights (see toyllora.models.transformer), JAX's default float dtype
    arch: object        # its TransformerConfig
    record: dict        # settings, cache key, accuracies, timings, versions (JSON-ready)
    path: Path          # the .npz it was loaded from or saved to
    cached: bool        # True when loaded from a current file


def transformer_cache_key(settings: TransformerPretraining) -> str:
    """A hash of the settings and of the source files in ``TRANSFORMER_SOURCES``."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode())
    for rel in TRANSFORMER_SOURCES:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:16]


def _flatten(base: dict) -> dict:
    arrays = {k: np.asarray(v, np.float32) for k, v in base.items() if k != "blocks"}
    for l, block in enumerate(base["blocks"]):
        arrays.update({f"blocks/{l}/{k}": np.asarray(v, np.float32) for k, v in block.items()})
    return arrays


def _unflatten(arrays: dict) -> dict:
    dtype = jnp.zeros(()).dtype
    cast = lambda a: jnp.asarray(a, dtype=dtype)
    base = {k: cast(v) for k, v in arrays.items() if not k.startswith("blocks/")}
    blocks = {}
    for k, v in arrays.items():
        if k.startswith("blocks/"):
            _, l, name = k.split("/")
            blocks.setdefault(int(l), {})[name] = cast(v)
    base["blocks"] = tuple(blocks[l] for l in range(len(blocks)))
    return base


META = "__meta__"  # the npz entry holding the JSON record (UTF-8 bytes as uint8: no pickle needed)


def save_transformer(path, base: dict, record: dict) -> Path:
    """Write ``base`` (float32) and ``record`` (JSON) to ``path`` as one ``.npz``, atomically."""
    from toyllora.harness import io

    buf = _bytes_io.BytesIO()
    meta = np.frombuffer(io.dumps(record).encode("utf-8"), dtype=np.uint8)
    np.savez(buf, **_flatten(base), **{META: meta})
    io.atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def load_transformer(path) -> tuple[dict, dict]:
    """``(base, record)`` from a file written by :func:`save_transformer` (``allow_pickle=False``)."""
    with np.load(Path(path), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    record = json.loads(arrays.pop(META).tobytes().decode("utf-8"))
    return _unflatten(arrays), record


EVAL_CHUNK = 128  # evaluation runs in chunks of this many sequences: one compiled program for every set


def _evaluate(model, params, datasets: dict) -> dict:
    """Test loss (mean over scored tokens) and token accuracy of ``model`` on each ``{name: (X, Y)}``."""
    def sums(p, X, Y):
        logits = model.apply({}, p, X)
        scored = Y >= 0
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(scored, Y, 0))
        hits = (jnp.argmax(logits, axis=-1) == Y) & scored
        return jnp.sum(jnp.where(scored, losses, 0.0)), jnp.sum(hits), jnp.sum(scored)

    sums = jax.jit(sums)
    out = {}
    for name, (X, Y) in datasets.items():
        X, Y = np.asarray(X), np.asarray(Y)
        pad = -len(X) % EVAL_CHUNK
        X = np.concatenate([X, np.zeros((pad, X.shape[1]), X.dtype)])
        Y = np.concatenate([Y, np.full((pad, Y.shape[1]), sequences.IGNORE, Y.dtype)])
        total = np.zeros(3)
        for i in range(0, len(X), EVAL_CHUNK):
            total += [float(v) for v in sums(params, X[i:i + EVAL_CHUNK], Y[i:i + EVAL_CHUNK])]
        out[name] = {"loss": float(total[0] / max(total[2], 1)), "acc": float(total[1] / max(total[2], 1))}
    return out


def _evaluation_sets(settings: TransformerPretraining) -> dict:
    """The test splits: each mixture, and each of its tasks alone."""
    n_task = max(1, settings.n_test // len(sequences.PRETRAIN_TASKS))
    sets = {}
    for mix_name, names in (("pretrain", sequences.PRETRAIN_TASKS), ("shifted", sequences.SHIFTED_TASKS)):
        mix = sequences.mixture(names, settings.seed, n_train=len(names), n_val=1, n_test=settings.n_test)
        sets[mix_name] = (mix.data.X_test, mix.data.Y_test)
        for name in names:
            sets[f"{mix_name}/{name}"] = sequences.draw(name, "test", n_task, settings.seed)
    return sets


def _pretrain(settings: TransformerPretraining, progress: bool):
    from tqdm.auto import tqdm

    arch = settings.arch
    model = transformer_lib.TransformerLoRA(None, arch)
    mix = sequences.pretraining_mixture(settings.seed, n_train=settings.n_train, n_val=1, n_test=1)
    X, Y = mix.data.X, mix.data.Y
    key_init, key_batches = jax.random.split(jax.random.key(settings.seed))
    _, params = model.init(key_init, transformer_lib.init_base(key_init, arch))
    schedule = optax.warmup_cosine_decay_schedule(0.0, settings.lr, settings.warmup, settings.steps,
                                                  end_value=settings.lr / 10)
    opt = optax.chain(optax.clip_by_global_norm(settings.clip),
                      optax.adamw(schedule, weight_decay=settings.weight_decay))
    value_and_grad = jax.value_and_grad(lambda p, Xb, Yb: models.loss(model, {}, p, Xb, Yb))

    def step(carry, t):
        params, state = carry
        idx = jax.random.randint(jax.random.fold_in(key_batches, t), (settings.batch_size,), 0, X.shape[0])
        loss, grads = value_and_grad(params, X[idx], Y[idx])
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    def block(params, state, first):
        (params, state), losses = jax.lax.scan(step, (params, state), first + jnp.arange(settings.block))
        return params, state, jnp.mean(losses)

    state = opt.init(params)
    t0 = time.perf_counter()
    compiled = jax.jit(block).lower(params, state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    losses = []
    t0 = time.perf_counter()
    n_blocks = settings.steps // settings.block
    bar = tqdm(range(n_blocks), desc="pretrain transformer", disable=not progress, leave=False)
    for b in bar:
        params, state, loss = compiled(params, state, jnp.int32(b * settings.block))
        losses.append(float(loss))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = _evaluate(model, params, _evaluation_sets(settings))
    eval_s = time.perf_counter() - t0
    timing = {"compile_s": compile_s, "train_s": train_s, "eval_s": eval_s, "block_losses": losses}
    return params, scores, timing


def _versions() -> dict:
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "backend": jax.default_backend(), "x64": bool(jax.config.read("jax_enable_x64"))}


def transformer_file(settings: TransformerPretraining) -> str:
    """The cache file's name: ``transformer.npz`` (full), ``transformer_fast.npz`` (fast), or one named
    by the cache key for other settings (so no preset's file is overwritten)."""
    if settings == FULL_PRETRAINING:
        return "transformer.npz"
    if settings == FAST_PRETRAINING:
        return "transformer_fast.npz"
    return f"transformer_{transformer_cache_key(settings)}.npz"


def transformer(settings: TransformerPretraining | None = None, *, fast: bool = False, out="results",
                force: bool = False, progress: bool = True) -> PretrainedTransformer:
    """The pre-trained base transformer: loaded from ``out`` when its file is current, else pre-trained
    (then saved atomically).

    Args:
      settings: a :class:`TransformerPretraining` (default ``FULL_PRETRAINING``, or ``FAST_PRETRAINING``
        when ``fast``).
      out: the results folder holding the ``.npz`` (:func:`transformer_file`).
      force: pre-train even when a current file exists.
      progress: show a tqdm progress bar over the compiled blocks.

    Returns:
      A :class:`PretrainedTransformer`; ``record["pretrain"]`` and ``record["shifted"]`` hold the test
      loss and token accuracy on each mixture (``"pretrain"``, ``"shifted"``) and on each task
      (``"pretrain/copy"``, ...), measured after pre-training.

    Example:
        >>> tiny = TransformerPretraining(arch=transformer_lib.FAST.replace(width=16, mlp=32, layers=1),
        ...                               steps=4, block=2, batch_size=4, warmup=1, n_train=8, n_test=8)
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     first = transformer(tiny, out=d, progress=False)
        ...     again = transformer(tiny, out=d, progress=False)
        >>> first.cached, again.cached, sorted(again.record["pretrain"])[:2]
        (False, True, ['pretrain', 'pretrain/add'])
    """
    if settings is None:
        settings = FAST_PRETRAINING if fast else FULL_PRETRAINING
    if not isinstance(settings, TransformerPretraining):
        raise ValueError(f"settings: must be a TransformerPretraining, got {type(settings).__name__}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder; allowed: a folder path")
    path = out / transformer_file(settings)
    with _exclusive(path):   # two processes of one run (reproduce --jobs) pre-train it once, not twice
        return _load_or_pretrain(settings, path, force, progress)


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``.<name>.lock`` beside ``path`` (POSIX ``flock``; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:   # not POSIX: no lock (two processes may then both pre-train; the file stays whole)
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_or_pretrain(settings: TransformerPretraining, path: Path, force: bool,
                      progress: bool) -> PretrainedTransformer:
    key = transformer_cache_key(settings)
    if path.exists() and not force:
        try:
            base, record = load_transformer(path)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            record = None
        if record is not None and record.get("cache_key") == key:
            return PretrainedTransformer(base, settings.arch, record, path, True)
    t0 = time.perf_counter()
    base, scores, timing = _pretrain(settings, progress)
    record = {"cache_key": key, "settings": settings.to_dict(), "n_params": transformer_lib.n_params(base),
              "pretrain": {k: v for k, v in scores.items() if k.startswith("pretrain")},
              "shifted": {k: v for k, v in scores.items() if k.startswith("shifted")},
              "tasks": {"pretrain": list(sequences.PRETRAIN_TASKS), "shifted": list(sequences.SHIFTED_TASKS),
                        "shifts": dict(sequences.SHIFTS)},
              **timing, "seconds": time.perf_counter() - t0, "versions": _versions()}
    save_transformer(path, base, record)
    return PretrainedTransformer(_unflatten(_flatten(base)), settings.arch, record, path, False)
