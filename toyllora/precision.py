"""The float dtype JAX computes in, and tolerances that depend on it (float32 or float64).

Claims and tests compare closed forms with simulation to a tolerance that must follow the dtype:
``JAX_ENABLE_X64`` off gives float32, on gives float64.

>>> tol(f32=1e-4, f64=1e-10) in (1e-4, 1e-10)
True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def x64() -> bool:
    """Whether JAX computes in float64 by default (``JAX_ENABLE_X64``)."""
    return bool(jax.config.read("jax_enable_x64"))


def float_dtype():
    """JAX's default float dtype (float32, or float64 under x64)."""
    return jnp.zeros(()).dtype


def tol(dtype=None, *, f32=1e-4, f64=1e-10) -> float:
    """A relative tolerance for the given (default: JAX's default) float dtype."""
    dtype = float_dtype() if dtype is None else jnp.dtype(dtype)
    return f64 if dtype == jnp.float64 else f32
