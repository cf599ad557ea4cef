"""Offline, seeded data: synthetic teacher–student tasks, scikit-learn's diabetes and digits, and the
token-sequence tasks of the transformer (:mod:`toyllora.data.sequences`).

Every generator uses NumPy's ``default_rng(seed)`` in float64 and returns JAX arrays in JAX's default
float dtype, so the same seed gives the same data with ``JAX_ENABLE_X64`` off or on (up to the cast).

Example:
    >>> from toyllora.data import teacher_student
    >>> t = teacher_student(seed=0, d_in=6, d_out=3, n_train=32, n_test=16, shift_rank=2)
    >>> t.data.X.shape, t.W0.shape, t.W_target.shape
    ((32, 6), (3, 6), (3, 6))
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Data(NamedTuple):
    """Train and evaluation arrays (a pytree): ``X (n, d_in)``, ``Y`` targets or integer labels."""

    X: object
    Y: object
    X_test: object
    Y_test: object


class TeacherStudent(NamedTuple):
    W0: object          # the "pretrained" weight (d_out, d_in)
    W_target: object    # W0 + ΔW
    delta: object       # ΔW
    data: Data
    data_val: Data      # same train split, a second held-out split for tuning


def as_float(a):
    """``a`` (array-like) as a JAX array in JAX's default float dtype, through float64 NumPy (so the same
    draw gives the same data under x64 off and on, up to the cast)."""
    return jnp.asarray(np.asarray(a, dtype=np.float64), dtype=jnp.zeros(()).dtype)


def check_finite(name: str, a) -> None:
    if not np.all(np.isfinite(np.asarray(a))):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf)")


def _positive(name, v):
    if int(v) != v or v < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")


def shift_matrix(rng, d_out, d_in, rank, spectrum):
    """A rank-``rank`` matrix with singular values ``spectrum`` and random singular vectors."""
    U, _ = np.linalg.qr(rng.standard_normal((d_out, rank)))
    V, _ = np.linalg.qr(rng.standard_normal((d_in, rank)))
    return (U * np.asarray(spectrum, dtype=np.float64)) @ V.T


def inputs(rng, n, d, cond=1.0, whiten=False):
    """Gaussian inputs whose covariance has condition number ``cond`` (log-spaced eigenvalues, random basis).

    ``whiten=True`` makes the sample exactly whitened, ``XᵀX = n I`` (needs ``n >= d``).
    """
    X = rng.standard_normal((n, d))
    if whiten:
        if n < d:
            raise ValueError(f"n_train: whitening needs n >= d_in = {d}, got {n}")
        L = np.linalg.cholesky(X.T @ X / n)
        X = X @ np.linalg.inv(L).T
    if cond != 1.0:
        Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        eig = np.logspace(0, -np.log10(cond), d)
        X = X @ (Q * np.sqrt(eig)) @ Q.T
    return X


def teacher_student(seed=0, d_in=16, d_out=8, n_train=64, n_test=256, shift_rank=2, spectrum=None,
                    base_scale=1.0, cond=1.0, whiten=False, noise=0.0) -> TeacherStudent:
    """A "pretrained" ``W0`` and a target ``W0 + ΔW`` of chosen rank and spectrum; ``Y = X W_targetᵀ + noise``.

    Args:
      shift_rank: rank of ΔW (<= min(d_in, d_out)).
      spectrum: its singular values (default all 1).
      cond: condition number of the input covariance; ``whiten`` makes ``XᵀX = n I`` exactly.
      noise: std of Gaussian label noise.
    """
    for name, v in (("d_in", d_in), ("d_out", d_out), ("n_train", n_train), ("n_test", n_test),
                    ("shift_rank", shift_rank)):
        _positive(name, v)
    if shift_rank > min(d_in, d_out):
        raise ValueError(f"shift_rank: must be <= min(d_in, d_out) = {min(d_in, d_out)}, got {shift_rank}")
    if not (np.isfinite(cond) and cond >= 1):
        raise ValueError(f"cond: must be a finite number >= 1, got {cond!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: must be a finite number >= 0, got {noise!r}")
    spectrum = np.ones(shift_rank) if spectrum is None else np.asarray(spectrum, dtype=np.float64)
    if spectrum.shape != (shift_rank,):
        raise ValueError(f"spectrum: must have shift_rank = {shift_rank} values, got shape {spectrum.shape}")
    rng = np.random.default_rng(seed)
    W0 = base_scale * rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)
    dW = shift_matrix(rng, d_out, d_in, shift_rank, spectrum)
    Wt = W0 + dW

    def split(n, whiten_split):
        X = inputs(rng, n, d_in, cond, whiten_split)
        return X, X @ Wt.T + noise * rng.standard_normal((n, d_out))

    X, Y = split(n_train, whiten)
    Xte, Yte = split(n_test, False)
    Xva, Yva = split(n_test, False)
    return TeacherStudent(as_float(W0), as_float(Wt), as_float(dW),
                          Data(as_float(X), as_float(Y), as_float(Xte), as_float(Yte)),
                          Data(as_float(X), as_float(Y), as_float(Xva), as_float(Yva)))


BASES = ("gaussian", "orthogonal")


def deep_teacher(seed=0, *, layers=4, d=16, n_train=128, n_test=256, shift_rank=1, shift=1.0, base="gaussian",
                 noise=0.0):
    """A deep multilinear fine-tuning task: a base network of ``layers`` square ``d × d`` layers, and a
    teacher that adds to every layer a rank-``shift_rank`` shift with singular values ``shift``;
    ``Y = f_teacher(X) + noise`` with Gaussian inputs.

    Args:
      base: ``"gaussian"`` (``W_l ~ N(0, 1/d)``) or ``"orthogonal"`` (random orthogonal ``W_l``).
      noise: std of Gaussian label noise (none is drawn when 0).

    Returns:
      ``(base, data, data_val)``: ``base`` a tuple of ``W_l`` for :class:`toyllora.models.MultilinearLoRA`;
      ``data`` has the test split as its evaluation set, ``data_val`` a validation split (same train split).

    >>> base, data, _ = deep_teacher(seed=0, layers=3, d=5, n_train=8, n_test=4)
    >>> len(base), data.X.shape, data.Y.shape
    (3, (8, 5), (8, 5))
    """
    for name, v in (("layers", layers), ("d", d), ("n_train", n_train), ("n_test", n_test),
                    ("shift_rank", shift_rank)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
    if shift_rank > d:
        raise ValueError(f"shift_rank: must be <= d = {d}, got {shift_rank}")
    if base not in BASES:
        raise ValueError(f"base: unknown value {base!r}; allowed: {BASES}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    if base == "gaussian":
        Ws = [rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(layers)]
    else:
        Ws = [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(layers)]
    targets = [W + shift_matrix(rng, d, d, shift_rank, np.full(shift_rank, float(shift))) for W in Ws]

    def split(n):
        X = inputs(rng, n, d)
        Y = X
        for T in targets:
            Y = Y @ T.T
        return X, (Y + noise * rng.standard_normal(Y.shape) if noise > 0 else Y)

    (X, Y), (Xte, Yte), (Xva, Yva) = split(n_train), split(n_test), split(n_test)
    return (tuple(as_float(W) for W in Ws), Data(as_float(X), as_float(Y), as_float(Xte), as_float(Yte)),
            Data(as_float(X), as_float(Y), as_float(Xva), as_float(Yva)))


def _standardize(X, mean, std):
    return (X - mean) / np.where(std > 0, std, 1.0)


def diabetes(seed=0, n_train=200, n_val=100):
    """scikit-learn's diabetes regression (442 × 10), standardized on the train split.

    Returns ``(data, data_val)``: ``data`` has the test split as its evaluation set, ``data_val`` the
    validation split. Targets have shape ``(n, 1)``.
    """
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    if n_train + n_val >= len(X):
        raise ValueError(f"n_train: n_train + n_val must be < {len(X)}, got {n_train + n_val}")
    perm = np.random.default_rng(seed).permutation(len(X))
    tr, va, te = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    mx, sx = X[tr].mean(0), X[tr].std(0)
    my, sy = y[tr].mean(), y[tr].std()
    f = lambda idx: (as_float(_standardize(X[idx], mx, sx)), as_float(((y[idx] - my) / sy)[:, None]))
    (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = f(tr), f(va), f(te)
    return Data(Xtr, Ytr, Xte, Yte), Data(Xtr, Ytr, Xva, Yva)


class Digits(NamedTuple):
    pretrain: Data   # pre-training split (and a held-out split of the same distribution)
    finetune: Data   # shifted fine-tuning split and its test split
    finetune_val: Data


def shift_images(X):
    """The fine-tuning shift: each 8×8 digit moved one pixel right and one down, contrast inverted."""
    imgs = X.reshape(-1, 8, 8)
    moved = np.zeros_like(imgs)
    moved[:, 1:, 1:] = imgs[:, :-1, :-1]
    return (16.0 - moved).reshape(len(X), 64)


def digits(seed=0, n_pretrain=1000, n_finetune=256, n_val=150):
    """scikit-learn's 8×8 digits (1797 images, 10 classes), centred per pixel and scaled by one global std
    of the pre-training split (so the shifted images stay on the same scale).

    Disjoint splits: pre-training images as they are; fine-tuning images shifted (:func:`shift_images`),
    with their own validation and test splits.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    if n_pretrain + n_finetune + n_val + 100 > len(X):
        raise ValueError(f"n_pretrain: splits need at least 100 test images of {len(X)}")
    perm = np.random.default_rng(seed).permutation(len(X))
    a = n_pretrain
    pre, pre_te = perm[:a], perm[a:a + 100]
    ft = perm[a + 100:a + 100 + n_finetune]
    va = perm[a + 100 + n_finetune:a + 100 + n_finetune + n_val]
    te = perm[a + 100 + n_finetune + n_val:]
    # Per-pixel centring but one global scale: per-pixel stds are ~0 at the borders, which would blow
    # the shifted images up by orders of magnitude.
    mean, std = X[pre].mean(0), X[pre].std()
    S = lambda Z: as_float((Z - mean) / std)
    lab = lambda idx: jnp.asarray(y[idx], dtype=jnp.int32)
    Xs = shift_images(X)
    return Digits(Data(S(X[pre]), lab(pre), S(X[pre_te]), lab(pre_te)),
                  Data(S(Xs[ft]), lab(ft), S(Xs[te]), lab(te)),
                  Data(S(Xs[ft]), lab(ft), S(Xs[va]), lab(va)))


from toyllora.data import sequences  # noqa: E402  (needs Data above)
from toyllora.data.sequences import SequenceTask, pretraining_mixture, shifted_mixture  # noqa: E402, F401
