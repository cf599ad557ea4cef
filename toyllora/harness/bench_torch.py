"""The PyTorch + PEFT side of ``toyllora bench --against peft`` (optional extra ``toyllora[peft]``).

The same toys as :mod:`toyllora.harness.bench_engine`, built with HF PEFT's ``LoraConfig`` /
``get_peft_model`` on an ``nn.Sequential`` of bias-free ``nn.Linear`` layers (same base weights, ``alpha = r``,
no dropout, Adam at 1e-3, full batch), and one step of one layer at ``d = 4096, r = 64`` for LoRA (PEFT) and
ALLoRA (:class:`ALLoRAFunction`, the paper's listing written as a ``torch.autograd.Function``). Each is timed
eager and, unless ``compiled=False``, through ``torch.compile`` (the loss function compiled; the optimizer
step eager). Seeds of the small toy are a **Python loop** over independent PEFT models: PEFT has no batched
(vmapped) training, and ``torch.func.vmap`` would need the model made functional and Adam rewritten by hand,
which is no longer the PEFT a user runs.

Example (needs torch and peft)::

    >>> from toyllora.harness import bench_torch
    >>> bench_torch.missing() is None or bench_torch.missing().startswith("PyTorch + PEFT not installed")
    True
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

INSTALL = 'pip install "toyllora[peft]"'
ETA = 2.0


def missing() -> str | None:
    """None when torch and peft import, else one line saying how to install them."""
    absent = [m for m in ("torch", "peft") if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return (f"PyTorch + PEFT not installed ({', '.join(absent)} missing); install them with {INSTALL} "
            f"(torch CPU + peft) or run toyllora bench without --against")


def _torch():
    # OpenMP's default busy-wait makes torch's threads spin against XLA's on a small CPU: measured on 2
    # shared cores, a PEFT step right after a JAX call took 175 ms instead of 3 ms. Passive waiting (set
    # before torch's first import; a user's own setting wins) lets the two engines share the cores fairly.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    return torch


# -- ALLoRA as a torch.autograd.Function (the paper's listing) ---------------------------------------------


def _make_function():
    torch = _torch()

    class ALLoRAFunction(torch.autograd.Function):
        """``y = B A x``; the backward multiplies the upstream gradient per output unit by
        ``c_i = 1/sqrt(||(BA)_i||_2 + 1/eta²)`` before the gradients of A and B are formed (the input's
        gradient is not scaled). ``listing=True`` takes the row norms of an explicitly formed ``B A`` as the
        paper's listing does; ``False`` uses ``||(BA)_i||² = b_iᵀ (A Aᵀ) b_i`` like :mod:`toyllora.allora`.
        """

        @staticmethod
        def forward(ctx, x, A, B, inv_eta2, listing):
            h = x @ A.T
            y = h @ B.T
            with torch.no_grad():
                if listing:
                    norms = torch.linalg.vector_norm(B @ A, dim=1)
                else:
                    sq = ((B @ (A @ A.T)) * B).sum(dim=1)
                    norms = torch.where(sq > 0, sq.clamp_min(0).sqrt(), torch.zeros_like(sq))
                c = torch.rsqrt(norms + inv_eta2)
            ctx.save_for_backward(x, A, B, h, c)
            return y

        @staticmethod
        def backward(ctx, g):
            x, A, B, h, c = ctx.saved_tensors
            gc = g * c
            d_B = gc.reshape(-1, gc.shape[-1]).T @ h.reshape(-1, h.shape[-1])
            gcB = gc @ B
            d_A = gcB.reshape(-1, gcB.shape[-1]).T @ x.reshape(-1, x.shape[-1])
            d_x = (g @ B) @ A if ctx.needs_input_grad[0] else None
            return d_x, d_A, d_B, None, None

    return ALLoRAFunction


_FUNCTION = []


def allora_function():
    """The :class:`ALLoRAFunction` class (built on first use, so importing this module needs no torch)."""
    if not _FUNCTION:
        _FUNCTION.append(_make_function())
    return _FUNCTION[0]


def allora_branch(x, A, B, *, eta: float = ETA, listing: bool = False):
    """ALLoRA's branch ``B A x`` in torch (see :func:`allora_function`), same rule as
    :func:`toyllora.allora.branch` with ``adapt="both"``."""
    return allora_function().apply(x, A, B, 1.0 / float(eta) ** 2, bool(listing))


def _allora_linear(W, A, B, listing: bool):
    torch = _torch()
    nn = torch.nn

    class ALLoRALinear(nn.Module):
        """``W x + B A x`` with W frozen and ALLoRA's backward on the branch."""

        def __init__(self):
            super().__init__()
            self.register_buffer("weight", torch.as_tensor(W))
            self.A = nn.Parameter(torch.as_tensor(A).clone())
            self.B = nn.Parameter(torch.as_tensor(B).clone())

        def forward(self, x):
            return torch.nn.functional.linear(x, self.weight) + allora_branch(x, self.A, self.B, listing=listing)

    return ALLoRALinear()


# -- models, steps, candidates -----------------------------------------------------------------------------


def device(jax_backend: str = "cpu") -> str:
    """``"cuda"`` when JAX runs on a GPU and this torch build has CUDA, else ``"cpu"``."""
    torch = _torch()
    return "cuda" if jax_backend == "gpu" and torch.cuda.is_available() else "cpu"


def _sync(dev):
    if dev == "cuda":
        _torch().cuda.synchronize()


def peft_multilinear(base, r: int, seed: int = 0, dev: str = "cpu"):
    """``nn.Sequential`` of bias-free ``nn.Linear`` layers with weights ``base``, wrapped by PEFT LoRA."""
    torch = _torch()
    import peft

    torch.manual_seed(seed)
    layers = torch.nn.Sequential(*[torch.nn.Linear(W.shape[1], W.shape[0], bias=False) for W in base])
    with torch.no_grad():
        for lin, W in zip(layers, base):
            lin.weight.copy_(torch.as_tensor(np.asarray(W)))
    cfg = peft.LoraConfig(r=r, lora_alpha=r, lora_dropout=0.0, bias="none",
                          target_modules=[str(i) for i in range(len(base))])
    return peft.get_peft_model(layers, cfg).to(dev)


def _mse(pred, Y):
    return 0.5 * ((pred - Y) ** 2).sum(dim=-1).mean()


def _trainer(model, X, Y, steps: int, opt, compiled: bool, dev: str):
    """A callable running ``steps`` optimizer steps of ``model`` on ``(X, Y)``."""
    torch = _torch()

    def loss_fn(X, Y):
        return _mse(model(X), Y)

    fwd = torch.compile(loss_fn) if compiled else loss_fn

    def run():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            fwd(X, Y).backward()
            opt.step()
        _sync(dev)

    return run


def toy_candidates(arrays: dict, r: int, steps: int, seeds: int, *, compiled: bool = True, lr: float = 1e-3,
                   dev: str = "cpu") -> dict:
    """``peft_eager`` (and ``peft_compiled``): ``seeds`` PEFT models trained one after another (a Python
    loop), ``steps`` Adam steps each; warmed (compiled) and ready to time. Returns ``{"fns", "units",
    "compile_s", "errors"}`` (``errors``: a compiled candidate that failed to build, with its reason)."""
    import time

    torch = _torch()
    X = torch.as_tensor(arrays["X"]).to(dev)
    Y = torch.as_tensor(arrays["Y"]).to(dev)
    fns, units, compile_s, errors = {}, {}, {}, {}
    for kind in ("eager", "compiled") if compiled else ("eager",):
        runs = []
        for s in range(seeds):
            model = peft_multilinear(arrays["base"], r, seed=s, dev=dev)
            params = [p for p in model.parameters() if p.requires_grad]
            runs.append(_trainer(model, X, Y, steps, torch.optim.Adam(params, lr=lr), kind == "compiled", dev))
        t0 = time.perf_counter()
        try:
            for run in runs:
                run()
        except Exception as e:  # noqa: BLE001 - torch.compile needs a C++ toolchain; report, don't die
            if kind == "eager":
                raise
            errors[f"peft_{kind}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            continue
        compile_s[f"peft_{kind}"] = time.perf_counter() - t0

        def all_seeds(runs=runs):
            for run in runs:
                run()

        fns[f"peft_{kind}"], units[f"peft_{kind}"] = all_seeds, steps * seeds
    return {"fns": fns, "units": units, "compile_s": compile_s, "errors": errors}


def allora_step_candidates(W, x, y, A, B, *, compiled: bool = True, lr: float = 1e-3, dev: str = "cpu") -> dict:
    """One SGD step of one layer ``W x + B A x`` (numpy inputs, ``W (d, d)``, ``A (r, d)``, ``B (d, r)``):
    ``torch_lora`` (PEFT), ``torch_allora`` (:class:`ALLoRAFunction`, Gram row norms),
    ``torch_allora_listing`` (row norms of the formed ``B A``), and the first two through ``torch.compile``.
    Returns ``{"fns", "units", "first_call_s", "errors"}`` (one step per call), warmed."""
    import time

    torch = _torch()
    import peft

    t = lambda a: torch.as_tensor(np.array(a)).to(dev)   # a writable copy
    xt, yt = t(x), t(y)

    def lora_model():
        lin = torch.nn.Sequential(torch.nn.Linear(W.shape[1], W.shape[0], bias=False))
        with torch.no_grad():
            lin[0].weight.copy_(t(W))
        m = peft.get_peft_model(lin, peft.LoraConfig(r=A.shape[0], lora_alpha=A.shape[0], lora_dropout=0.0,
                                                     target_modules=["0"])).to(dev)
        layer = m.base_model.model[0]
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(t(A))
            layer.lora_B["default"].weight.copy_(t(B))
        return m

    makers = {"torch_lora": lora_model,
              "torch_allora": lambda: _allora_linear(t(W), t(A), t(B), listing=False).to(dev),
              "torch_allora_listing": lambda: _allora_linear(t(W), t(A), t(B), listing=True).to(dev)}
    fns, first_s, errors = {}, {}, {}
    for name, make in makers.items():
        for kind in ("eager", "compiled") if compiled else ("eager",):
            if kind == "compiled" and name == "torch_allora_listing":
                continue
            model = make()
            params = [p for p in model.parameters() if p.requires_grad]
            run = _trainer(model, xt, yt, 1, torch.optim.SGD(params, lr=lr), kind == "compiled", dev)
            key = name if kind == "eager" else f"{name}_compiled"
            t0 = time.perf_counter()
            try:
                run()
            except Exception as e:  # noqa: BLE001 - as in toy_candidates
                if kind == "eager":
                    raise
                errors[key] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                continue
            first_s[key] = time.perf_counter() - t0
            run()
            fns[key] = run
    return {"fns": fns, "units": {k: 1 for k in fns}, "first_call_s": first_s, "errors": errors}


# -- the same numbers in both engines ------------------------------------------------------------------------


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def tolerance(dtype=np.float32) -> float:
    """Relative tolerance of a cross-engine comparison in ``dtype``: ``1000·eps`` (float32: 1.2e-4), room for
    different summation orders over a few hundred terms and four layers."""
    return 1000.0 * float(np.finfo(dtype).eps)


def consistency(d: int = 32, n: int = 64, r: int = 4, layers: int = 4, seed: int = 0) -> dict:
    """Do both engines compute the same thing? On the same weights (float32, ``B != 0`` so the branches
    count): the multilinear toy's loss and LoRA gradients, JAX (:mod:`toyllora.models`) against PEFT; and
    one layer's loss and ALLoRA gradients, :func:`toyllora.allora.branch` against :class:`ALLoRAFunction`
    (both row-norm forms) and the naive JAX branch. Returns each relative error (max abs difference over
    max abs value), the tolerance (:func:`tolerance`) and ``ok``.

    JAX computes under ``jax.default_matmul_precision("highest")`` (true float32 products, as torch's
    default): on a GPU JAX's default float32 matmul may use TensorFloat-32, whose ~1e-3 rounding is not a
    disagreement between the engines. The torch side runs on the CPU.

    >>> c = consistency()            # doctest: +SKIP
    >>> c["ok"]                      # doctest: +SKIP
    True
    """
    import jax

    with jax.default_matmul_precision("highest"):
        return _consistency(d, n, r, layers, seed)


def _consistency(d: int, n: int, r: int, layers: int, seed: int) -> dict:
    import jax
    import jax.numpy as jnp

    from toyllora import allora, lora, models
    from toyllora.harness import bench_allora, bench_engine

    torch = _torch()
    rng = np.random.default_rng(seed)
    f32 = np.float32
    arrays = bench_engine.toy_arrays(d, n, layers=layers, seed=seed)
    As = [(rng.standard_normal((r, d)) / np.sqrt(d)).astype(f32) for _ in range(layers)]
    Bs = [(rng.standard_normal((d, r)) / np.sqrt(r)).astype(f32) for _ in range(layers)]
    errors = {}

    # the toy: JAX model vs PEFT, loss and dL/dA, dL/dB of every layer
    model = bench_engine.toy_model(r)
    frozen = tuple(jnp.asarray(W) for W in arrays["base"])
    params = tuple(lora.LoraParams(A=jnp.asarray(A), B=jnp.asarray(B)) for A, B in zip(As, Bs))
    X, Y = jnp.asarray(arrays["X"]), jnp.asarray(arrays["Y"])
    j_loss, j_grads = jax.value_and_grad(lambda p: models.loss(model, frozen, p, X, Y))(params)
    pm = peft_multilinear(arrays["base"], r)
    for i in range(layers):
        layer = pm.base_model.model[i]
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(torch.as_tensor(As[i]))
            layer.lora_B["default"].weight.copy_(torch.as_tensor(Bs[i]))
    t_loss = _mse(pm(torch.as_tensor(arrays["X"])), torch.as_tensor(arrays["Y"]))
    t_loss.backward()
    errors["toy_loss_jax_vs_peft"] = _rel(float(t_loss.detach()), float(j_loss))
    ga = [pm.base_model.model[i].lora_A["default"].weight.grad.numpy() for i in range(layers)]
    gb = [pm.base_model.model[i].lora_B["default"].weight.grad.numpy() for i in range(layers)]
    errors["toy_grad_A_jax_vs_peft"] = _rel(np.concatenate([g.ravel() for g in ga]),
                                            np.concatenate([np.asarray(g.A).ravel() for g in j_grads]))
    errors["toy_grad_B_jax_vs_peft"] = _rel(np.concatenate([g.ravel() for g in gb]),
                                            np.concatenate([np.asarray(g.B).ravel() for g in j_grads]))

    # one ALLoRA layer: loss, dL/dA, dL/dB, dL/dx
    W, x, y, A, B = arrays["base"][0], arrays["X"], arrays["Y"], As[0], Bs[0]

    def j_value(branch):
        def f(x, A, B):
            pred = x @ jnp.asarray(W).T + branch(x, A, B, eta=ETA)
            return 0.5 * jnp.mean(jnp.sum(jnp.square(pred - jnp.asarray(y)), axis=-1))
        return jax.value_and_grad(f, argnums=(0, 1, 2))(jnp.asarray(x), jnp.asarray(A), jnp.asarray(B))

    ref_loss, ref_g = j_value(allora.branch)
    candidates = {"jax_naive": j_value(bench_allora.naive_branch)}
    for listing in (False, True):
        xt, At, Bt = (torch.tensor(a, requires_grad=True) for a in (x, A, B))
        pred = xt @ torch.as_tensor(W).T + allora_branch(xt, At, Bt, listing=listing)
        loss = _mse(pred, torch.as_tensor(y))
        loss.backward()
        candidates["torch_listing" if listing else "torch"] = (loss.detach(), (xt.grad, At.grad, Bt.grad))
    for name, (loss, grads) in candidates.items():
        errors[f"allora_loss_{name}"] = _rel(np.asarray(loss), np.asarray(ref_loss))
        for label, g, g0 in zip(("x", "A", "B"), grads, ref_g):
            errors[f"allora_grad_{label}_{name}"] = _rel(np.asarray(g), np.asarray(g0))
    # ALLoRA must differ from plain LoRA here (else the check above would not see a wrong backward)
    lora_g = jax.grad(lambda A: 0.5 * jnp.mean(jnp.sum(jnp.square(
        jnp.asarray(x) @ (jnp.asarray(W) + jnp.asarray(B) @ A).T - jnp.asarray(y)), axis=-1)))(jnp.asarray(A))
    tol = tolerance(f32)
    return {"errors": errors, "tolerance": tol, "dtype": "float32",
            "allora_vs_lora_grad_A": _rel(np.asarray(lora_g), np.asarray(ref_g[1])),
            "ok": bool(all(e <= tol for e in errors.values()))}


def versions() -> dict:
    """torch and peft versions, torch's thread count."""
    torch = _torch()
    import peft

    return {"torch": torch.__version__, "peft": peft.__version__, "torch_threads": torch.get_num_threads(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
