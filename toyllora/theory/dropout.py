"""Dropout on a LoRA layer in expectation: closed forms, their gradients and the equivalent ridge problems.

Loss convention (as :func:`toyllora.models.mse`): ``L = 0.5 · mean_n ||pred_n − Y_n||²``. One layer
``pred = X Wᵀ + s·branch`` with inverted masks ``m ∈ {0, 1/q}`` (``q = keep``), placed as in
:func:`toyllora.lora.branch`. With the residual ``R = Y − X Wᵀ − s X Aᵀ Bᵀ``, ``M = B A`` and
``c = 0.5/n · (1−q)/q · s²``, the expectation over masks is ``E L = 0.5/n ||R||² + P`` with

* input (PEFT, ``B A (m⊙x)``):       ``P = c Σ_j (XᵀX)_jj ||M_{:,j}||²`` — ridge on ``ΔW = sM`` weighted by
  ``diag(XᵀX)``, strength ``(1−q)/q`` (Srivastava et al. 2014 §9.1; Wager et al. 2013, arXiv:1307.1493);
* bottleneck (``B (m⊙A x)``):         ``P = c Σ_k ||(XAᵀ)_{:,k}||² ||B_{:,k}||²`` — the paper's Eq. (1)
  (Mianjy, Arora, Vidal 2018, arXiv:1806.09777);
* output (``m⊙(B A x)``):             ``P = c ||X Mᵀ||²`` — the OLS warm-up on the residual: minimizer
  ``ΔW = q · ΔW_OLS``; ridge with ``λ = c(1−q)/q`` only when ``XᵀX = cI``.

Every expected loss is differentiable and can replace the sampled loss in a :class:`toyllora.train.Trainer`
(``objective=expected_objective``), so "training on the expected loss" runs through the same engine.

Nonlinear digits MLP (:class:`toyllora.models.MLPLoRA`): a closed form exists, exactly, only where the
output is linear in the mask and the loss is quadratic. Our choice: dropout only on the LAST layer's LoRA
branch (any site; we use the input site, PEFT's placement) and the squared loss on one-hot labels; the
hidden features ``h`` are mask-free, so the last layer is the linear case with ``X = h`` and ``Y = onehot − b``
(:func:`mlp_last_layer_expected_mse`, exact). With soft-max cross-entropy, or with dropout in a hidden layer
(behind a ReLU), only approximations exist (e.g. Wager et al.'s second order); we use none.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from toyllora.config import LoraConfig
    >>> from toyllora.lora import LoraParams
    >>> X, Y, W = jnp.ones((4, 3)), jnp.zeros((4, 2)), jnp.zeros((2, 3))
    >>> p = LoraParams(A=jnp.ones((1, 3)), B=jnp.ones((2, 1)))
    >>> cfg = LoraConfig(rank=1, alpha=1.0, keep=0.5, dropout_site="output")
    >>> float(expected_loss(W, p, X, Y, cfg))  # 0.5·||3,3||² + 0.5·(1/q−1)·18
    18.0
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from toyllora import lora, models
from toyllora.config import DROPOUT_SITES, LoraConfig
from toyllora.lora import LoraParams


# -- validation -----------------------------------------------------------------------------------------
def check_keep(keep) -> None:
    """``keep`` must lie in (0, 1] (traced values are not checked)."""
    try:
        q = float(keep)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return  # traced inside jit/vmap: checked by the caller
    except (TypeError, ValueError):
        raise ValueError(f"keep: dropout keep probability must be a number in (0, 1], got {keep!r}") from None
    if not (math.isfinite(q) and 0.0 < q <= 1.0):
        raise ValueError(f"keep: dropout keep probability must lie in (0, 1], got {keep!r}")


def check_site(site) -> None:
    if site not in DROPOUT_SITES:
        raise ValueError(f"dropout_site: unknown value {site!r}; allowed: {DROPOUT_SITES}")


def check_data(X, Y=None) -> None:
    """``X (n, d)`` with ``n >= 1`` and ``Y`` with the same number of rows."""
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X: must be a non-empty (n, d_in) matrix with n >= 1, got shape {X.shape}")
    if Y is not None and (Y.ndim != 2 or Y.shape[0] != X.shape[0]):
        raise ValueError(f"Y: must be a (n, d_out) matrix with n = {X.shape[0]} rows, got shape {Y.shape}")


def check_params(params: LoraParams, W=None, X=None) -> None:
    """The rank must fit the layer: ``r <= min(d_in, d_out)``; shapes must agree with ``W`` and ``X``."""
    r, d_in = params.A.shape
    d_out = params.B.shape[0]
    if params.B.shape[1] != r:
        raise ValueError(f"params: A is {params.A.shape} but B is {params.B.shape}; need A (r, d_in), B (d_out, r)")
    if r > min(d_in, d_out):
        raise ValueError(f"rank: must be <= min(d_in, d_out) = {min(d_in, d_out)}, got {r}")
    if W is not None and W.shape != (d_out, d_in):
        raise ValueError(f"W: must have shape (d_out, d_in) = {(d_out, d_in)}, got {W.shape}")
    if X is not None and X.shape[-1] != d_in:
        raise ValueError(f"X: last dimension must be d_in = {d_in}, got shape {X.shape}")


def _check_cfg(cfg: LoraConfig) -> None:
    if cfg.method != "lora" or cfg.dora:
        raise ValueError(f"cfg: closed forms cover method='lora' without DoRA only; got method={cfg.method!r}, "
                         f"dora={cfg.dora}")


def _setup(W, params, X, Y, cfg, keep, site):
    _check_cfg(cfg)
    keep = cfg.keep if keep is None else keep
    site = cfg.dropout_site if site is None else site
    check_keep(keep)
    check_site(site)
    check_data(X, Y)
    check_params(params, W, X)
    return keep, site


# -- the expected loss, site by site ----------------------------------------------------------------------
def residual(W, params: LoraParams, X, Y, s):
    """``R = Y − X Wᵀ − s X Aᵀ Bᵀ`` (the mean prediction's residual: E m = 1)."""
    return Y - X @ W.T - s * (X @ params.A.T) @ params.B.T


def penalty(params: LoraParams, X, keep, site: str, s):
    """The variance term ``P`` of ``E L = 0.5/n ||R||² + P`` (see the module docstring)."""
    n = X.shape[0]
    c = 0.5 / n * (1.0 - keep) / keep * s * s
    A, B = params.A, params.B
    if site == "input":
        d = jnp.sum(jnp.square(X), axis=0)                          # diag(XᵀX)
        return c * jnp.sum(jnp.square(B @ A) * d[None, :])
    if site == "bottleneck":
        h = jnp.sum(jnp.square(X @ A.T), axis=0)                    # ||(XAᵀ)_{:,k}||²
        return c * jnp.sum(h * jnp.sum(jnp.square(B), axis=0))
    return c * jnp.sum(jnp.square((X @ A.T) @ B.T))                   # ||X Mᵀ||²


def expected_loss(W, params: LoraParams, X, Y, cfg: LoraConfig, *, keep=None, site=None):
    """``E_masks[0.5·mean_n ||pred_n − Y_n||²]`` for dropout at ``site`` (default: ``cfg``'s) with keep q.

    ``keep``/``site`` override ``cfg.keep``/``cfg.dropout_site`` (``keep`` may be a traced scalar).
    At ``keep = 1`` this is exactly the loss without dropout.
    """
    keep, site = _setup(W, params, X, Y, cfg, keep, site)
    fit = models.mse(lora.apply(W, params, X, cfg), Y)  # the eval-mode loss, bit for bit
    return fit + penalty(params, X, keep, site, cfg.s)


def expected_loss_grad(W, params: LoraParams, X, Y, cfg: LoraConfig, *, keep=None, site=None) -> LoraParams:
    """The gradient of :func:`expected_loss` w.r.t. ``(A, B)``, written out (no autodiff).

    With ``H = X Aᵀ``, ``M = B A``, ``c = 0.5/n·(1−q)/q·s²``: fit part ``∂/∂B = −(s/n) Rᵀ H``,
    ``∂/∂A = −(s/n) Bᵀ Rᵀ X``; penalty part, input ``2c (M D Aᵀ, Bᵀ M D)`` with ``D = diag(XᵀX)``;
    bottleneck ``2c (B diag(h), diag(b) Hᵀ X)`` with ``h_k = ||H_{:,k}||²``, ``b_k = ||B_{:,k}||²``;
    output ``2c (M XᵀX Aᵀ, Bᵀ M XᵀX)``.
    """
    keep, site = _setup(W, params, X, Y, cfg, keep, site)
    s, A, B = cfg.s, params.A, params.B
    n = X.shape[0]
    c = 0.5 / n * (1.0 - keep) / keep * s * s
    R = residual(W, params, X, Y, s)
    H = X @ A.T
    gB = -(s / n) * R.T @ H
    gA = -(s / n) * (B.T @ R.T) @ X
    if site == "input":
        MD = (B @ A) * jnp.sum(jnp.square(X), axis=0)[None, :]
        gB, gA = gB + 2 * c * MD @ A.T, gA + 2 * c * B.T @ MD
    elif site == "bottleneck":
        h = jnp.sum(jnp.square(H), axis=0)
        b = jnp.sum(jnp.square(B), axis=0)
        gB, gA = gB + 2 * c * B * h[None, :], gA + 2 * c * (b[:, None] * H.T) @ X
    else:
        MG = (B @ A) @ (X.T @ X)
        gB, gA = gB + 2 * c * MG @ A.T, gA + 2 * c * B.T @ MG
    return LoraParams(A=gA, B=gB, magnitude=params.magnitude)


def sampled_loss(W, params: LoraParams, X, Y, cfg: LoraConfig, key):
    """The loss under one mask draw, through :func:`toyllora.lora.apply` (the library's placement)."""
    return models.mse(lora.apply(W, params, X, cfg, train=True, key=key), Y)


def mask_shape(X, params: LoraParams, site: str):
    """The shape of the dropout mask at ``site`` for inputs ``X (n, d_in)`` (as in :func:`lora.branch`)."""
    check_site(site)
    return {"input": X.shape, "bottleneck": X.shape[:-1] + (params.A.shape[0],),
            "output": X.shape[:-1] + (params.B.shape[0],)}[site]


def masked_pred(W, params: LoraParams, X, mask, site: str, s):
    """``X Wᵀ + s·branch`` with an explicit mask at ``site`` (same operations as :func:`lora.branch`)."""
    A, B = params.A, params.B
    h = (X * mask if site == "input" else X) @ A.T
    if site == "bottleneck":
        h = h * mask
    f = h @ B.T
    if site == "output":
        f = f * mask
    return X @ W.T + (s * f if s != 1.0 else f)


def sampled_loss_keep(W, params: LoraParams, X, Y, key, keep, site: str, s):
    """:func:`sampled_loss` with ``keep`` as an argument (may be traced: one compile for many keeps).

    Draws the same mask as :func:`lora.branch` for the same key, so it equals :func:`sampled_loss` there.
    """
    mask = lora.dropout_mask(key, mask_shape(X, params, site), keep, X.dtype)
    return models.mse(masked_pred(W, params, X, mask, site, s), Y)


def expected_objective(model, frozen, params, X, Y, key=None):
    """``Trainer(objective=expected_objective)``: train a :class:`~toyllora.models.LinearLoRA` on E L.

    >>> from toyllora.models import LinearLoRA
    >>> from toyllora.train import Trainer
    >>> tr = Trainer(LinearLoRA(LoraConfig(rank=1, keep=0.9)), objective=expected_objective, steps=5, stride=5)
    """
    if not isinstance(model, models.LinearLoRA) or model.cfg is None:
        raise ValueError("model: expected_objective needs a LinearLoRA with a LoraConfig; for the MLP use "
                         "mlp_last_layer_expected_mse")
    return expected_loss(frozen, params, X, Y, model.cfg)


# -- ridge problems -----------------------------------------------------------------------------------------
def ridge(X, Y, lam, weights=None):
    """``argmin_W 0.5/n (||Y − X Wᵀ||² + lam Σ_j w_j ||W_{:,j}||²)`` = ``((XᵀX + lam·diag(w))⁻¹ XᵀY)ᵀ``."""
    check_data(X, Y)
    w = jnp.ones(X.shape[1], X.dtype) if weights is None else jnp.asarray(weights, X.dtype)
    G = X.T @ X + lam * jnp.diag(w)
    return jnp.linalg.solve(G, X.T @ Y).T


def ridge_objective(W, X, Y, lam, weights=None):
    """``0.5/n (||Y − X Wᵀ||² + lam Σ_j w_j ||W_{:,j}||²)``."""
    w = jnp.ones(X.shape[1], X.dtype) if weights is None else jnp.asarray(weights, X.dtype)
    n = X.shape[0]
    return 0.5 / n * (jnp.sum(jnp.square(Y - X @ W.T)) + lam * jnp.sum(jnp.square(W) * w[None, :]))


def input_dropout_ridge(X, R, keep):
    """The minimizer over ``ΔW`` of input-dropout's expected loss: ridge with ``λ = (1−q)/q``, ``w = diag(XᵀX)``.

    ``R`` is the residual target ``Y − X Wᵀ``; a full-rank adapter (``r = min(d_in, d_out)``) can reach it.
    """
    check_keep(keep)
    return ridge(X, R, (1.0 - keep) / keep, jnp.sum(jnp.square(X), axis=0))


def ols(X, Y):
    """The least-squares solution ``W_OLS`` (``(d_out, d_in)``; min-norm if XᵀX is singular)."""
    check_data(X, Y)
    return jnp.linalg.lstsq(X, Y)[0].T


def output_ols_expected_loss(W, X, Y, keep):
    """``E_V 0.5·mean_n ||Y − (X Wᵀ) ⊙ V||² = 0.5/n (||Y − XWᵀ||² + (1/q − 1) ||X Wᵀ||²)``."""
    check_keep(keep)
    check_data(X, Y)
    P = X @ W.T
    n = X.shape[0]
    return 0.5 / n * (jnp.sum(jnp.square(Y - P)) + (1.0 / keep - 1.0) * jnp.sum(jnp.square(P)))


def output_ols_sampled_loss(W, X, Y, keep, key):
    """One draw of ``0.5·mean_n ||Y − (X Wᵀ) ⊙ V||²`` with ``V ∈ {0, 1/q}``."""
    P = X @ W.T
    return models.mse(P * lora.dropout_mask(key, P.shape, keep, P.dtype), Y)


def output_ols_minimizer(X, Y, keep):
    """``q · W_OLS``, the minimizer of :func:`output_ols_expected_loss` (any X with XᵀX invertible)."""
    check_keep(keep)
    return keep * ols(X, Y)


def whitened_scale(X, rtol=1e-6):
    """``c`` if ``XᵀX = cI`` (to relative ``rtol``), else ValueError."""
    check_data(X)
    G = X.T @ X
    c = jnp.trace(G) / X.shape[1]
    if float(jnp.max(jnp.abs(G - c * jnp.eye(X.shape[1])))) > rtol * float(c):
        raise ValueError("X: the ridge equivalence lambda = c(1-q)/q needs whitened inputs, X^T X = c I")
    return c


def output_ols_ridge_lambda(X, keep, rtol=1e-6):
    """``λ = c(1−q)/q`` such that ``ridge(X, Y, λ) = q·W_OLS`` — valid only when ``XᵀX = cI``."""
    check_keep(keep)
    return whitened_scale(X, rtol) * (1.0 - keep) / keep


# -- the digits MLP: masks with a traced keep, and the exact last-layer closed form ---------------------
def mlp_features(model: models.MLPLoRA, frozen, params, X):
    """The (mask-free) input of the last layer: ``relu(...)`` of the hidden layers, no dropout."""
    Ws, bs = frozen
    h = X
    for l in range(len(params) - 1):
        if l > 0:
            h = jax.nn.relu(h)
        h = models._adapted(Ws[l], params[l], h, model.cfg, False, None) + bs[l]
    return jax.nn.relu(h) if len(params) > 1 else h


def mlp_apply_dropout(model: models.MLPLoRA, frozen, params, X, key, keep, *, layers: str = "all"):
    """``MLPLoRA.apply`` in train mode with input-site dropout whose ``keep`` may be a traced scalar.

    Masks are drawn exactly as :func:`toyllora.lora.branch` draws them (same keys, same Bernoulli), so with a
    Python ``keep`` equal to ``model.cfg.keep`` the result equals ``model.apply(..., train=True, key=key)``.
    ``layers="last"`` puts dropout on the last layer's branch only. Works for the ALLoRA family too.
    """
    if layers not in ("all", "last"):
        raise ValueError(f"layers: unknown value {layers!r}; allowed: ('all', 'last')")
    cfg = model.cfg
    if cfg is None or cfg.dropout_site != "input" or cfg.dora:
        raise ValueError("model: needs a LoraConfig with dropout_site='input' and no DoRA")
    Ws, bs = frozen
    L = len(params)
    keys = jax.random.split(key, L)
    h = X
    for l in range(L):
        if l > 0:
            h = jax.nn.relu(h)
        x_b = h
        if layers == "all" or l == L - 1:
            x_b = h * lora.dropout_mask(keys[l], h.shape, keep, h.dtype)
        h = h @ Ws[l].T + lora.branch(params[l], x_b, cfg, train=False) + bs[l]
    return h


def one_hot_targets(labels, n_classes, dtype=None):
    return jax.nn.one_hot(labels, n_classes, dtype=dtype or jnp.zeros(()).dtype)


def mlp_last_layer_expected_mse(model: models.MLPLoRA, frozen, params, X, labels, keep):
    """Exact ``E_masks 0.5·mean_n ||logits_n − onehot_n||²`` with input-site dropout on the last branch only."""
    Ws, bs = frozen
    h = mlp_features(model, frozen, params, X)
    T = one_hot_targets(labels, Ws[-1].shape[0], h.dtype) - bs[-1][None, :]
    return expected_loss(Ws[-1], params[-1], h, T, model.cfg, keep=keep, site="input")


def mlp_last_layer_sampled_mse(model: models.MLPLoRA, frozen, params, X, labels, key, keep):
    """One draw of the same loss (mask on the last layer's branch input only)."""
    logits = mlp_apply_dropout(model, frozen, params, X, key, keep, layers="last")
    return models.mse(logits, one_hot_targets(labels, logits.shape[-1], logits.dtype))


# -- Trainer hooks with the keep probability carried (traced) in the frozen part -------------------------
def init_with_keep(model, key, base):
    """``Trainer(init=init_with_keep)``: ``base = (model_base, keep, ...)`` → ``frozen = (model_frozen, keep, ...)``.

    The keep probability then is a traced scalar: one compiled Trainer serves every drop rate (call
    ``trainer.sweep((base, jnp.asarray(q)), ...)`` once per q without recompiling).
    """
    model_base, *extra = base
    frozen, params = model.init(key, model_base)
    return (frozen, *extra), params


def linear_expected_objective(model, frozen_keep, params, X, Y, key=None):
    """Expected loss of a LinearLoRA at ``model.cfg.dropout_site`` with the carried keep (see init_with_keep)."""
    frozen, keep = frozen_keep[:2]
    return expected_loss(frozen, params, X, Y, model.cfg, keep=keep)


def linear_sampled_objective(model, frozen_keep, params, X, Y, key):
    """One mask draw (same masks as ``lora.branch``) with the carried keep."""
    frozen, keep = frozen_keep[:2]
    return sampled_loss_keep(frozen, params, X, Y, key, keep, model.cfg.dropout_site, model.cfg.s)


def mlp_sampled_xent(model, frozen_keep, params, X, Y, key):
    """Cross-entropy of the MLP with input-site dropout on every LoRA branch (carried keep)."""
    frozen, keep = frozen_keep[:2]
    return models.xent(mlp_apply_dropout(model, frozen, params, X, key, keep, layers="all"), Y)


def mlp_last_sampled_objective(model, frozen_keep, params, X, Y, key):
    frozen, keep = frozen_keep[:2]
    return mlp_last_layer_sampled_mse(model, frozen, params, X, Y, key, keep)


def mlp_last_expected_objective(model, frozen_keep, params, X, Y, key=None):
    frozen, keep = frozen_keep[:2]
    return mlp_last_layer_expected_mse(model, frozen, params, X, Y, keep)


# -- Monte Carlo over masks: how many masks a stated accuracy needs ------------------------------------------
def masks_for_accuracy(std, expected, accuracy):
    """The number of independent masks ``N`` whose averaged loss has RMS error ``accuracy · expected``:
    ``Var(mean of N) = std²/N``, so ``N = (std / (accuracy · expected))²`` (not rounded; any positive scale).

    >>> masks_for_accuracy(0.2, 1.0, 0.01)   # a 20 % single-mask spread needs 400 masks for 1 %
    400.0
    """
    for name, v in (("std", std), ("expected", expected), ("accuracy", accuracy)):
        if not (math.isfinite(float(v)) and float(v) > 0):
            raise ValueError(f"{name}: must be a finite number > 0, got {v!r}")
    return (float(std) / (float(accuracy) * float(expected))) ** 2
