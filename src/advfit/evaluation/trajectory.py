"""Robustness along the training trajectory, measured two more ways (beyond the papers).

The papers' view is *transfer*: AEs crafted once on the best snapshot M,
replayed on every snapshot. A later snapshot can resist that set only because
AEs transfer imperfectly between snapshots. This module adds:

- the *white-box* view: every chosen snapshot attacked itself, on one fixed
  sample of test points per split; robust accuracy keeps a point's clean
  prediction wherever the attack does not fool the snapshot, so robust
  accuracy <= clean accuracy holds exactly;
- the *transfer matrix*: adversarial sets crafted at several epochs (1, M,
  E and any the config names), each evaluated on every snapshot. Its row at
  M is the existing adversarial set.

Work is split into chunks (one snapshot, or one crafting epoch) saved as they
finish, so that a killed job loses at most one chunk and resumes to the same
bytes: each chunk's randomness is seeded from the job and its epoch alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from advfit.evaluation.distances import perturbation_norms
from advfit.runtime.io import load_npz, save_npz

log = logging.getLogger("advfit")


# --- which epochs ----------------------------------------------------------------------------

def chosen_epochs(choice, epochs: list[int], best: int) -> list[int]:
    """The epochs a view covers: ``all``, ``{every: k}`` (k, 2k, ...) or a list.

    The first epoch (transfer matrix only adds it itself), the best epoch M
    and the last epoch E are always included. A list applies to the regimes
    that have its epochs: a run takes those up to its own E (the config check
    refuses an epoch that no regime has).
    """
    epochs = sorted(int(e) for e in epochs)
    last = epochs[-1]
    if choice in (None, "all"):
        chosen = set(epochs)
    elif isinstance(choice, dict):
        k = int(choice["every"])
        chosen = {e for e in epochs if e % k == 0}
    else:
        chosen = {int(e) for e in choice if int(e) <= last}
        missing = sorted(chosen - set(epochs))
        if missing:  # inside 1..E but without a snapshot: the folder is not the run
            raise ValueError(f"epochs {missing} have no snapshot (epochs 1..{last})")
    return sorted(chosen | {best, last})


def point_sample(test_index: np.ndarray, n_points: int, seed: int) -> np.ndarray:
    """A seeded sample of test points (pooled indices), sorted."""
    rng = np.random.default_rng(seed)
    test_index = np.asarray(test_index)
    return np.sort(rng.choice(test_index, size=min(n_points, len(test_index)), replace=False))


def view_points(test_index: np.ndarray, n_points: int, seed: int, dataset: str,
                split) -> tuple[np.ndarray, int]:
    """The white-box view's seeded test points of a split, and their seed: the same for
    every regime and snapshot, and for the robustness curves and sanity flags, so that
    their rows describe the same points."""
    from advfit.runtime.seeds import job_seed

    points_seed = job_seed(seed, dataset, split, "snapshot_attacks")
    return point_sample(test_index, n_points, points_seed), points_seed


def with_run_columns(table, keys: dict, best: int, last: int):
    """``table`` (a DataFrame with an ``epoch`` column) with the run's keys first and
    ``is_best``, ``is_last`` right after ``epoch``."""
    for i, (key, value) in enumerate(keys.items()):
        table.insert(i, key, value)
    at = table.columns.get_loc("epoch") + 1
    table.insert(at, "is_best", table["epoch"] == best)
    table.insert(at + 1, "is_last", table["epoch"] == last)
    return table


# --- chunks: resumable work ------------------------------------------------------------------

def fingerprint(**what) -> str:
    """What a saved chunk must match to be reused (parameters, points, seeds)."""
    text = json.dumps(what, sort_keys=True, default=lambda v: np.asarray(v).tolist())
    return hashlib.sha256(text.encode()).hexdigest()


def chunked(staging: Path, keys: list[int], compute: Callable[[int], dict], stamp: str,
            name: str = "epoch") -> dict[int, dict]:
    """``compute(key)`` for every key, each result saved as a chunk in ``staging``.

    A chunk already there with the same ``stamp`` is read back instead of
    recomputed (a resumed job); one with another stamp is discarded.
    """
    staging.mkdir(parents=True, exist_ok=True)
    out = {}
    for key in keys:
        path = staging / f"{name}_{key:03d}.npz"
        if path.exists():
            arrays = load_npz(path)
            if str(arrays.pop("stamp")) == stamp:
                out[key] = arrays
                log.info("%s %d: read back from %s", name, key, path)
                continue
            log.info("%s %d: %s was made with other parameters: recomputed", name, key, path)
        arrays = compute(key)
        save_npz(path, stamp=np.array(stamp), **arrays)
        out[key] = arrays
    return out


# --- white-box view ----------------------------------------------------------------------------

def attack_snapshot(model, x: np.ndarray, y: np.ndarray, attack: Callable, batch_size: int,
                    l2_convention: str) -> dict[str, np.ndarray]:
    """Attack the loaded snapshot on ``(x, y)``; per-point results.

    ``attack(x, y) -> x_adv`` runs on the points the snapshot classifies
    correctly (the others count as not robust already). ``robust`` is
    ``clean`` and still correct on the AE, so robust <= clean point by point.
    Distances are those of the successful AEs (NaN elsewhere).
    """
    from advfit.attacks.batching import predict_logits, traced_forward

    forward = traced_forward(model)
    clean = np.argmax(predict_logits(forward, x, batch_size), axis=1) == y
    attacked = np.flatnonzero(clean)
    x_adv = x.copy()
    if len(attacked):
        x_adv[attacked] = np.asarray(attack(x[attacked], y[attacked]), np.float32)
    robust = clean & (np.argmax(predict_logits(forward, x_adv, batch_size), axis=1) == y)
    success = clean & ~robust
    norms = perturbation_norms(x_adv, x, l2_convention)
    nan = np.full(len(x), np.nan)
    return {"clean": clean, "robust": robust, "success": success,
            "l2": np.where(success, norms["l2"], nan),
            "linf": np.where(success, norms["linf"], nan)}


def _stat(values: np.ndarray, how) -> float:
    values = values[~np.isnan(values)]
    return float(how(values)) if len(values) else float("nan")


def whitebox_row(epoch: int, arrays: dict[str, np.ndarray], confidence: float = 0.95) -> dict:
    """One snapshot's summary: clean and robust accuracy (with the Wilson interval of
    the robust one, within the split), success rate, distances."""
    from advfit.statistics.inference import wilson_interval

    n = len(arrays["clean"])
    n_attacked = int(arrays["clean"].sum())
    n_success = int(arrays["success"].sum())
    low, high = wilson_interval(int(arrays["robust"].sum()), n, confidence)
    return {
        "epoch": int(epoch), "n_points": n,
        "clean_accuracy": n_attacked / n if n else float("nan"),
        "robust_accuracy": int(arrays["robust"].sum()) / n if n else float("nan"),
        "robust_wilson_low": low, "robust_wilson_high": high, "confidence": confidence,
        "n_attacked": n_attacked, "n_success": n_success,
        "success_rate": n_success / n_attacked if n_attacked else float("nan"),
        "l2_median": _stat(arrays["l2"], np.median), "l2_mean": _stat(arrays["l2"], np.mean),
        "linf_median": _stat(arrays["linf"], np.median),
        "linf_mean": _stat(arrays["linf"], np.mean),
    }


def attack_cost(arrays: dict[str, np.ndarray]) -> dict:
    """What attacking one snapshot cost, in image passes through the model (forward) and
    input gradients (backward), in total and per attacked point; deterministic, unlike
    its wall time (advfit.attacks.counting)."""
    n_attacked = int(arrays["clean"].sum())
    forward, backward = int(arrays["forward_passes"]), int(arrays["backward_passes"])
    return {"forward_passes": forward, "backward_passes": backward,
            "forward_per_point": forward / n_attacked if n_attacked else float("nan"),
            "backward_per_point": backward / n_attacked if n_attacked else float("nan")}


def stack_chunks(chunks: dict[int, dict], keys=("clean", "robust", "success", "l2", "linf")):
    """Per-point arrays of every epoch as (epochs x points) matrices, epochs ascending."""
    epochs = sorted(chunks)
    return {"epoch": np.array(epochs, np.int64),
            **{k: np.stack([np.asarray(chunks[e][k]) for e in epochs]) for k in keys}}


# --- transfer matrix ---------------------------------------------------------------------------

def transfer_rows(correct: dict[int, np.ndarray], blocks: dict[int, slice]) -> list[dict]:
    """Rows (craft_epoch, eval_epoch, n, n_correct, accuracy) from per-epoch correctness
    over the concatenated sets (``blocks``: craft epoch -> its rows)."""
    rows = []
    for craft_epoch, rows_of_set in blocks.items():
        for eval_epoch in sorted(correct):
            hits = correct[eval_epoch][rows_of_set]
            n = int(hits.size)
            rows.append({"craft_epoch": int(craft_epoch), "eval_epoch": int(eval_epoch), "n": n,
                         "n_correct": int(hits.sum()),
                         "accuracy": int(hits.sum()) / n if n else float("nan")})
    return rows


def evaluate_sets(model, snapshots: dict[int, Path], sets: dict[int, dict], batch_size: int
                  ) -> list[dict]:
    """Every snapshot on every crafted set, each set batched alone from its first row
    (as evaluate_snapshots scores an adversarial set: the same numbers)."""
    from advfit.evaluation.snapshots import correctness_by_epoch

    order = sorted(sets)
    sizes = [len(sets[c]["y"]) for c in order]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    blocks = {c: slice(int(s), int(s) + n) for c, s, n in zip(order, starts, sizes)}
    shape = next(iter(sets.values()))["x"].shape[1:] if sets else ()
    x = np.concatenate([np.asarray(sets[c]["x"], np.float32).reshape(-1, *shape) for c in order])
    y = np.concatenate([np.asarray(sets[c]["y"], np.int64) for c in order])
    correct = correctness_by_epoch(model, snapshots, x, y, batch_size, list(starts))
    return transfer_rows(correct, blocks)
