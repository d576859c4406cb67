"""Stable per-job seeds derived from the run's seed and the job's names."""

from __future__ import annotations

import hashlib


def job_seed(seed: int, *names: object) -> int:
    """A seed in [0, 2**31) that depends only on ``seed`` and ``names``.

    Python's ``hash`` of a string changes between processes, so a digest is used.
    """
    text = "/".join([str(seed), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 2**31
