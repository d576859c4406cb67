"""Atomic writes and safe reads of the workflow's artefacts.

Every artefact is written to a temporary file in the destination's folder and
renamed into place, so a killed job never leaves a file that a rerun could
mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    ``suffix`` lets writers that insist on an extension (Keras wants
    ``.weights.h5``) write to the temporary file directly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    # mkstemp makes the file private (0600); give it the permissions of a
    # plain open(), so that collaborators on a shared cluster can read results.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process's umask, read without changing it (other threads may create files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc (not Linux): read it by setting it back at once
    os.umask(mask)
    return mask


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write an uncompressed ``.npz`` atomically; values must not need pickling."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz``; object arrays are refused (no unpickling)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read 1 MiB at a time (dataset archives are never read whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def meta_to_array(meta: dict) -> np.ndarray:
    """Encode metadata as a 0-d unicode array, storable in an npz without pickle."""
    return np.array(json.dumps(meta, sort_keys=True, default=_json_default))


def array_to_meta(array: np.ndarray) -> dict:
    return json.loads(str(array))


def versions() -> dict[str, str]:
    """Versions of the libraries that determine the numbers, for provenance."""
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for dist in ("advfit", "numpy", "scikit-learn", "tensorflow-cpu", "tensorflow", "keras",
                 "cleverhans", "adversarial-robustness-toolbox"):
        with contextlib.suppress(md.PackageNotFoundError):
            found[dist] = md.version(dist)
    return found


def read_table(path: str | os.PathLike):
    """Read one of the workflow's CSV tables.

    Text cells stay text (the attack name ``none`` is never read as missing);
    a column whose non-empty cells are all numbers becomes numeric, with empty
    cells (an accuracy over an empty set, an undefined p-value) as NaN.
    """
    import pandas as pd

    table = pd.read_csv(path, keep_default_na=False)
    for column in table.columns:
        if not pd.api.types.is_numeric_dtype(table[column]):
            cells = table[column].astype(object).replace("", None)
            numbers = pd.to_numeric(cells, errors="coerce")
            if numbers.notna().sum() == cells.notna().sum():
                table[column] = numbers
    return table
