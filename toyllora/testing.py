"""Dtype-aware tolerances and small helpers shared by the tests and the notebooks.

>>> import numpy as np
>>> rel_error(np.ones(3), np.ones(3))
0.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def x64() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def float_dtype():
    return jnp.zeros(()).dtype


def tol(dtype=None, *, f32=1e-4, f64=1e-10) -> float:
    """A relative tolerance for the given (default: JAX's default) float dtype."""
    dtype = float_dtype() if dtype is None else jnp.dtype(dtype)
    return f64 if dtype == jnp.float64 else f32


def rel_error(a, b) -> float:
    """``||a − b||_F / max(||b||_F, tiny)`` in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
