"""Atomic, deterministic output: JSON records, figures, and the environment's versions.

Every file is written to a temporary name in its final folder and moved into place with ``os.replace``,
so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import tempfile
from pathlib import Path

import numpy as np


def to_jsonable(obj):
    """Numbers, arrays and containers as plain JSON values; non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, bool)) or obj is None:
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if hasattr(obj, "shape") or isinstance(obj, (float, np.floating)):
        arr = np.asarray(obj)
        if arr.dtype == bool:
            return arr.tolist()
        if np.issubdtype(arr.dtype, np.integer):
            return arr.tolist()
        arr = arr.astype(np.float64)
        if arr.ndim == 0:
            v = float(arr)
            return v if math.isfinite(v) else None
        return [to_jsonable(v) for v in arr]
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def dumps(obj) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, indent=1, allow_nan=False) + "\n"


FILE_MODE = 0o644  # mkstemp creates 0600; results are meant to be shared


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, dumps(obj))


FIGURE_DPI = 120


def save_figure(fig, path_stem: Path) -> list[Path]:
    """Save ``fig`` as PNG and PDF (atomically) next to each other; returns both paths.

    The layout and the tight bounding box are computed once and shared by both files (what
    ``bbox_inches="tight"`` would compute for each file separately, at the cost of a layout pass each).
    """
    import matplotlib.pyplot as plt

    bbox = _tight_bbox(fig, FIGURE_DPI)
    out = []
    for ext in ("png", "pdf"):
        path = Path(f"{path_stem}.{ext}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=FIGURE_DPI, bbox_inches=bbox, metadata=_figure_metadata(ext))
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        out.append(path)
    plt.close(fig)
    return out


def _tight_bbox(fig, dpi):
    """Run ``fig``'s layout engine once at ``dpi``, freeze the result (layout engine ``"none"``) and return the
    padded tight bounding box in inches: what ``savefig(bbox_inches="tight")`` computes before it renders."""
    import matplotlib.pyplot as plt

    fig.set_dpi(dpi)
    fig.draw_without_rendering()
    bbox = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
    fig.set_layout_engine("none")
    return bbox


def _figure_metadata(ext):
    # Fixed metadata so the same data gives the same bytes.
    if ext == "pdf":
        return {"CreationDate": None, "ModDate": None, "Producer": "toyllora", "Creator": "toyllora"}
    return {"Software": "toyllora"}


def versions() -> dict:
    import jax
    import jaxlib
    import optax

    import toyllora

    return {"toyllora": toyllora.__version__, "code": code_hash(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "optax": optax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "backend": jax.default_backend(),
            "x64": bool(jax.config.read("jax_enable_x64"))}


def code_hash() -> str:
    """A hash of the toyllora package's source: part of every result's cache key."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# Names of the temporary files and folders written by this module and by ``registry.run`` on their way to
# their final name: ``.<name>.<random>.tmp``, ``.<name>.png.<random>.png`` (and ``.pdf``), ``.staging-<id>-*``.
_TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|png|pdf)$")
_STAGING = re.compile(r"^\.staging-.+$")


def stale_temps(folder) -> list[Path]:
    """Temporary files and staging folders that a killed run left in ``folder`` (and ``folder/figures``)."""
    found = []
    for d in (Path(folder), Path(folder) / "figures"):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if (p.is_dir() and _STAGING.match(p.name)) or (p.is_file() and _TEMP_FILE.match(p.name)):
                found.append(p)
    return sorted(found)


def remove_stale_temps(folder) -> list[Path]:
    """Remove what :func:`stale_temps` finds (only those names); returns the removed paths."""
    import shutil

    removed = stale_temps(folder)
    for p in removed:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return removed
