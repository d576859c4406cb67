"""The run's vocabulary and file layout, each name defined once.

What every table, figure and rule script shares: the evaluation-set names in
their table order, the attack column of clean sets, and the file names of a
training run's snapshots and states (``epoch_NNN.weights.h5``; the number
widens past 999, so epochs are always parsed, never sliced).
"""

from __future__ import annotations

import re
from pathlib import Path

NO_ATTACK = "none"  # the attack column of non-adversarial evaluation sets
TRAIN, VALIDATION, TEST = "train", "validation", "test"
FAIL_SUBSET, ADVERSARIAL = "fail_subset", "adversarial"
EVAL_SETS = (TRAIN, VALIDATION, TEST, FAIL_SUBSET, ADVERSARIAL)  # table and figure order

SNAPSHOT_SUFFIX = ".weights.h5"
STATE_SUFFIX = ".state.npz"
_EPOCH_FILE = re.compile(r"^epoch_(\d{3,})(\.weights\.h5|\.state\.npz)$")


def eval_set_rank(eval_set: str) -> int:
    """Position of a set in :data:`EVAL_SETS`; unknown names sort after them all."""
    return EVAL_SETS.index(eval_set) if eval_set in EVAL_SETS else len(EVAL_SETS)


def eval_set_label(eval_set: str) -> str:
    """A set's name in figures: ``fail subset`` for ``fail_subset``."""
    return eval_set.replace("_", " ")


def snapshot_name(epoch: int) -> str:
    """The file of the weights after ``epoch`` (1-based)."""
    return f"epoch_{int(epoch):03d}{SNAPSHOT_SUFFIX}"


def state_name(epoch: int) -> str:
    """The file of everything else needed to resume after ``epoch``."""
    return f"epoch_{int(epoch):03d}{STATE_SUFFIX}"


def epoch_of(name: str, suffix: str = SNAPSHOT_SUFFIX) -> int | None:
    """The epoch of a snapshot (or, with ``suffix=STATE_SUFFIX``, state) file name; None if
    the name is not one."""
    match = _EPOCH_FILE.match(Path(name).name)
    return int(match.group(1)) if match and match.group(2) == suffix else None


def _epoch_files(folder, suffix: str) -> dict[int, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found = {epoch: path for path in folder.iterdir()
             if (epoch := epoch_of(path.name, suffix)) is not None}
    return dict(sorted(found.items()))


def list_snapshots(snapshot_dir) -> dict[int, Path]:
    """Epoch -> snapshot file of a snapshot folder, epochs ascending."""
    return _epoch_files(snapshot_dir, SNAPSHOT_SUFFIX)


def list_states(snapshot_dir) -> dict[int, Path]:
    """Epoch -> training-state file of a snapshot folder, epochs ascending."""
    return _epoch_files(snapshot_dir, STATE_SUFFIX)
