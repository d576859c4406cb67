"""The best snapshot M by robust validation accuracy (Rice et al. 2020), beyond the papers.

Rice et al. early-stop adversarial training on the robust (PGD) accuracy of a
held-out validation set, evaluated after every epoch. advfit trains first and
keeps every snapshot, so the same numbers come after training: the rule
``attack_validation_snapshots`` attacks every k-th snapshot (and the last) on
one seeded sample of the split's *validation* part (never test points; the
same sample for every regime and epoch of a split) and writes
``validation_robust.csv``; :func:`best_robust_epoch` picks M from that table
with the tie rule of :func:`advfit.statistics.selection.best_epoch` (the
earliest epoch wins).

``best_snapshot`` keys (``config.schema.yaml``): ``metric: val_robust_accuracy``,
``attack`` (a name from ``attacks``, bounded by an ``eps``), ``n_points``
(``all`` or at most the validation part's size) and ``every`` (k, default 1).
:func:`best_snapshot_problems` checks them before any job.
"""

from __future__ import annotations

import math

import numpy as np

from advfit.runtime.seeds import job_seed

ROBUST_METRIC = "val_robust_accuracy"
DEFAULTS = {"n_points": "all", "every": 1}
# Columns of validation_robust.csv, in order (the run's keys come first).
RUN_KEYS = ("dataset", "model", "regime", "split")


def robust_spec(config: dict) -> dict | None:
    """The ``best_snapshot`` section with its defaults when M is chosen on robust
    validation accuracy; None for the clean metrics (no validation attack)."""
    spec = config["best_snapshot"]
    if spec["metric"] != ROBUST_METRIC:
        return None
    return {**DEFAULTS, **spec}


# --- which epochs, which points ------------------------------------------------------------

def evaluated_epochs(epochs, every: int = 1) -> list[int]:
    """Epochs k, 2k, ... of ``epochs`` plus the last: those attacked on the validation
    sample, and the only ones M can be."""
    epochs = sorted(int(e) for e in epochs)
    if not epochs:
        raise ValueError("no snapshots to evaluate")
    every = int(every)
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    return sorted({e for e in epochs if e % every == 0} | {epochs[-1]})


def validation_points(validation_index, n_points, seed: int, dataset: str,
                      split) -> tuple[np.ndarray, int]:
    """The seeded sample of a split's validation part (pooled indices, sorted) and its
    seed. The seed depends on the run's seed, the dataset and the split only: every
    regime and every epoch of a split sees the same points. ``n_points``: ``all`` or a
    count, at most the validation part's size (the config check refuses more)."""
    validation_index = np.asarray(validation_index)
    points_seed = job_seed(seed, dataset, split, "best_snapshot_validation")
    if len(validation_index) == 0:
        raise ValueError(f"split {split} has no validation part: val_robust_accuracy needs one")
    if n_points == "all":
        return np.sort(validation_index), points_seed
    n_points = int(n_points)
    if not 1 <= n_points <= len(validation_index):
        raise ValueError(f"best_snapshot.n_points = {n_points}: split {split}'s validation part "
                         f"has {len(validation_index)} points")
    rng = np.random.default_rng(points_seed)
    return np.sort(rng.choice(validation_index, size=n_points, replace=False)), points_seed


def validation_row(epoch: int, clean: np.ndarray, robust: np.ndarray,
                   confidence: float = 0.95) -> dict:
    """One evaluated snapshot: clean and robust accuracy on the validation sample, with
    the Wilson interval of the robust one (within the split)."""
    from advfit.statistics.inference import wilson_interval

    clean, robust = np.asarray(clean, bool), np.asarray(robust, bool)
    n = int(clean.size)
    low, high = wilson_interval(int(robust.sum()), n, confidence)
    return {"epoch": int(epoch), "n_points": n,
            "clean_accuracy": float(clean.mean()) if n else float("nan"),
            "robust_accuracy": float(robust.mean()) if n else float("nan"),
            "robust_wilson_low": low, "robust_wilson_high": high, "confidence": confidence,
            "n_attacked": int(clean.sum()), "n_success": int((clean & ~robust).sum())}


# --- the choice ------------------------------------------------------------------------------

def best_robust_epoch(table) -> int:
    """The evaluated epoch with the highest ``robust_accuracy``; ties go to the earliest
    (as :func:`advfit.statistics.selection.best_epoch`). Only the table's epochs, the
    evaluated ones, can be chosen."""
    if len(table) == 0:
        raise ValueError("the validation table has no rows")
    ordered = table.sort_values("epoch", kind="stable")
    values = ordered["robust_accuracy"].to_numpy(dtype=float)
    if np.isnan(values).all():
        raise ValueError("the validation table has no robust_accuracy values")
    return int(ordered["epoch"].to_numpy()[np.nanargmax(values)])


def robust_record(table, epoch: int) -> dict:
    """What best_snapshot.json (and so best_snapshots.csv) records beyond the clean
    metrics': the attack, the sample's size, ``every``, the number of epochs evaluated,
    and the robust and clean accuracy of M on the sample. Prefixed ``validation_``: the
    best_snapshots table has no ``attack`` column to be mistaken for an attack's rows."""
    row = table.loc[table["epoch"] == epoch].iloc[0]
    return {"validation_attack": str(row["attack"]),
            "validation_n_points": int(row["n_points"]),
            "validation_every": int(row["every"]),
            "validation_epochs_evaluated": int(len(table)),
            "validation_robust_accuracy": float(row["robust_accuracy"]),
            "validation_clean_accuracy": float(row["clean_accuracy"])}


# --- the config check ------------------------------------------------------------------------

def validation_size(config: dict, info) -> int:
    """Points in the smallest validation part of the config's splits, computed as the
    splits are made (advfit.data.splits): k-fold's folds of the ``info.n_train``
    training images differ by at most one image (the smallest holds n // k); a shuffle
    holds out ceil(fraction x n_train) of each training part."""
    splits = config["splits"]
    if splits["method"] == "kfold":
        return info.n_train // splits["n_splits"]
    fraction = splits.get("validation_fraction", 0.2)
    return math.ceil(fraction * info.n_train) if fraction else 0


def _has_eps(entry: dict) -> bool:
    params = (entry.get("params") or {}) if entry.get("method") == "plugin" else entry
    return "eps" in params


def best_snapshot_problems(config: dict, info) -> list[str]:
    """The ``best_snapshot`` keys across the config: each problem names its key."""
    spec = config["best_snapshot"]
    key = "config key 'best_snapshot"
    if spec["metric"] != ROBUST_METRIC:
        # The validation attack's keys only apply to val_robust_accuracy: given with a
        # clean metric they are likely a forgotten metric, not something to ignore.
        return [f"{key}.{name}': applies to metric {ROBUST_METRIC} only, the metric is "
                f"{spec['metric']}; set the metric or remove the key"
                for name in ("attack", "n_points", "every") if name in spec]
    spec = {**DEFAULTS, **spec}
    problems = []
    name = spec.get("attack")
    if name is None:
        problems.append(f"{key}.attack': required with metric {ROBUST_METRIC} (a name from "
                        f"attacks: {', '.join(config['attacks'])})")
    elif name not in config["attacks"]:
        problems.append(f"{key}.attack': unknown attack {name!r}; defined: "
                        f"{', '.join(config['attacks'])}")
    elif not _has_eps(config["attacks"][name]):
        problems.append(f"{key}.attack': attack {name!r} has no eps; robust accuracy needs an "
                        f"attack bounded by eps (a minimal-norm attack fools almost every point "
                        f"at every epoch)")
    every = spec["every"]
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        problems.append(f"{key}.every': {every!r} must be an integer of at least 1")
    else:
        single = [f"{regime} ({r['epochs']})" for regime, r in config["regimes"].items()
                  if 1 < r["epochs"] <= every]
        if single:
            problems.append(f"{key}.every': {every} leaves only the last epoch of regime(s) "
                            f"{', '.join(single)} to choose from (M would be E); use a "
                            f"smaller every")
    size = validation_size(config, info)
    if size == 0:
        problems.append(f"config key 'splits.validation_fraction': 0 leaves no validation set, "
                        f"so best_snapshot.metric cannot be {ROBUST_METRIC}")
    n_points = spec["n_points"]
    if n_points != "all":
        if not isinstance(n_points, int) or isinstance(n_points, bool) or n_points < 1:
            problems.append(f"{key}.n_points': {n_points!r} must be 'all' or an integer of "
                            f"at least 1")
        elif size and n_points > size:
            problems.append(f"{key}.n_points': {n_points} is larger than the validation part "
                            f"of each split ({size} points with splits.method "
                            f"{config['splits']['method']}, n_splits "
                            f"{config['splits']['n_splits']}); use at most {size} or 'all'")
    return problems
