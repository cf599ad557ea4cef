"""Small helpers shared by the tests and the notebooks (the dtype-aware tolerances live in
:mod:`toyllora.precision`).

>>> import numpy as np
>>> rel_error(np.ones(3), np.ones(3))
0.0
"""

from __future__ import annotations

import numpy as np

from toyllora.precision import float_dtype, tol, x64  # noqa: F401  (re-exported for the tests)


def rel_error(a, b) -> float:
    """``||a − b||_F / max(||b||_F, tiny)`` in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
