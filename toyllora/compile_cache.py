"""JAX's persistent compilation cache for toyllora: compile once per machine, not once per process.

Small toys compile for seconds and run for milliseconds, so a second ``toyllora reproduce``, ``run``,
``figures`` or test session spends most of its time compiling the same programs again. With the cache on,
XLA executables are stored on disk (keyed by the program, the JAX version and the backend) and reloaded.

Where the cache lives:

* the command line (``reproduce``, ``run``, ``figures``, ``pretrain``, ``bench``) uses ``<out>/.compile-cache``
  inside its results folder (nothing is written elsewhere); ``--no-compile-cache`` turns it off;
* the environment variable ``TOYLLORA_COMPILE_CACHE=<folder>`` overrides that for every process that imports
  toyllora (the test suite sets it to ``build/jax-cache``; ``TOYLLORA_COMPILE_CACHE=off`` disables it).

Example:
    >>> from toyllora import compile_cache
    >>> compile_cache.folder() is None or isinstance(compile_cache.folder(), str)
    True
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV = "TOYLLORA_COMPILE_CACHE"
OFF = ("", "0", "off", "false", "no")
_state = {"folder": None}


def enable(folder) -> str:
    """Store and reuse compiled programs in ``folder`` (created if missing); returns its path. Programs
    that compile in any time are cached (JAX's default keeps only those over a second)."""
    folder = str(Path(folder).expanduser().resolve())
    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # XLA's own caches (the GPU autotune cache) would live under the folder, and their path is part of every
    # program's cache key: a copied or moved cache would then never hit. Keep the key independent of the path.
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
    _state["folder"] = folder
    return folder


def disable() -> None:
    """Stop using the persistent cache in this process."""
    jax.config.update("jax_compilation_cache_dir", None)
    _state["folder"] = None


def folder() -> str | None:
    """The cache folder in use (None when off)."""
    return _state["folder"]


def from_environment() -> str | None:
    """Apply ``TOYLLORA_COMPILE_CACHE`` if set: a folder turns the cache on there, ``off`` turns it off.
    Returns the folder in use, or None."""
    value = os.environ.get(ENV)
    if value is None:
        return folder()
    if value.strip().lower() in OFF:
        disable()
        return None
    return enable(value)


def for_results(out_dir, *, use: bool = True) -> str | None:
    """The command line's choice: the environment variable if set, else ``<out_dir>/.compile-cache`` when
    ``use`` (``--no-compile-cache`` passes ``use=False``)."""
    if os.environ.get(ENV) is not None:
        return from_environment()
    if not use:
        disable()
        return None
    return enable(Path(out_dir) / ".compile-cache")
