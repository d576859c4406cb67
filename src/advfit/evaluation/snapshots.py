"""Evaluating every snapshot on every evaluation set."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from advfit.attacks.batching import predict_logits, traced_forward

log = logging.getLogger("advfit")


def correctness_by_epoch(model, snapshots: dict[int, Path], x: np.ndarray, y: np.ndarray,
                         batch_size: int = 1024, starts=(0,)) -> dict[int, np.ndarray]:
    """Boolean 'classified correctly' vector of each snapshot on ``(x, y)``.

    All evaluation sets are scored in one pass per snapshot: the model and its
    traced forward pass are built once; only the weights change. ``starts``
    cuts ``x`` into blocks that are batched separately, each from its own
    first row: an adversarial set is scored in exactly the batches that kept
    its AEs (:func:`advfit.attacks.adversarial_sets.keep_fooling`), whatever comes before it.
    """
    forward = traced_forward(model)
    bounds = [*starts, len(x)]
    out = {}
    for epoch in sorted(snapshots):
        model.load_weights(snapshots[epoch])
        logits = [predict_logits(forward, x[a:b], batch_size) for a, b in zip(bounds, bounds[1:])]
        out[epoch] = np.argmax(np.concatenate(logits), axis=1) == y
    return out


def accuracy_rows(correct: dict[int, np.ndarray], segments: dict[tuple[str, str], slice | np.ndarray]):
    """Tidy rows (epoch, eval_set, attack, n, n_correct, accuracy) for each segment.

    ``segments`` maps (eval_set, attack) to the positions of that set's samples
    in the concatenated array; an empty set gives accuracy NaN, never a crash.
    """
    rows = []
    for epoch, hits in correct.items():
        for (eval_set, attack), where in segments.items():
            part = hits[where]
            n = int(part.size)
            n_correct = int(part.sum())
            rows.append({"epoch": epoch, "eval_set": eval_set, "attack": attack, "n": n,
                         "n_correct": n_correct,
                         "accuracy": n_correct / n if n else float("nan")})
    return rows


def evaluate_split(model_name: str, data, split: dict, snapshot_dir, best_epoch: int,
                   adversarial: dict[str, dict], batch_size: int = 1024,
                   train_labels: np.ndarray | None = None, nonzero_at_best: str = "error",
                   return_correctness: bool = False):
    """Score every snapshot of one split x regime on every evaluation set.

    ``train_labels``, when given, replace the training split's true labels in
    the ``train`` set (the labels the model was trained on, under a regime's
    ``label_noise``); every other set is scored against its true labels.
    Returns the tidy rows and the fail subset (pooled indices of the test
    samples that the best snapshot misclassifies). The fail subset's rows are
    read off the test set's predictions, so it costs no extra inference.
    Accuracy at the best epoch must be 0 on every adversarial set and the fail
    subset: :class:`InvariantError` otherwise, or a warning with
    ``nonzero_at_best="warn"``. With ``return_correctness``, also the
    per-example correctness of every evaluation set (:func:`correctness_matrices`),
    for the paired tests.
    """
    from advfit.models.architectures import build_model
    from advfit.runtime.layout import NO_ATTACK, snapshot_name
    from advfit.runtime.snapshot_folder import open_snapshots

    snapshot_dir = Path(snapshot_dir)
    snapshots = open_snapshots(snapshot_dir)  # complete (manifest), each file checked on load
    if best_epoch not in snapshots:
        raise FileNotFoundError(f"best snapshot {snapshot_name(best_epoch)} missing in {snapshot_dir}")

    x_train, y_train = data.take(split["train"])
    if train_labels is not None:
        if len(train_labels) != len(y_train):
            raise ValueError(f"{len(train_labels)} training labels for {len(y_train)} samples")
        y_train = np.asarray(train_labels)
    parts = [("train", NO_ATTACK, x_train, y_train),
             ("validation", NO_ATTACK, *data.take(split["validation"])),
             ("test", NO_ATTACK, *data.take(split["test"]))]
    parts += [("adversarial", name, adv["x"], adv["y"]) for name, adv in adversarial.items()]
    x = np.concatenate([p[2] for p in parts])
    y = np.concatenate([p[3] for p in parts]).astype(np.int64)
    segments, start = {}, 0
    for eval_set, attack, _, part_y in parts:
        segments[(eval_set, attack)] = slice(start, start + len(part_y))
        start += len(part_y)

    model = build_model(model_name, data.image_shape, data.n_classes)
    log.info("evaluating %d snapshots on %d samples", len(snapshots), len(y))
    # The clean sets form one block; each adversarial set is a block of its own.
    starts = [0] + [segments[(s, a)].start for s, a, *_ in parts if s == "adversarial"]
    correct = correctness_by_epoch(model, snapshots, x, y, batch_size, starts)

    test = segments[("test", NO_ATTACK)]
    failed = ~correct[best_epoch][test]
    fail_positions = np.arange(test.start, test.stop)[failed]
    segments = {**{k: v for k, v in segments.items() if k[0] != "adversarial"},
                ("fail_subset", NO_ATTACK): fail_positions,
                **{k: v for k, v in segments.items() if k[0] == "adversarial"}}
    fail_index = np.asarray(split["test"])[failed]
    rows = accuracy_rows(correct, segments)
    enforce_zero_at_best(check_zero_at_best(rows, best_epoch), best_epoch, nonzero_at_best)
    if return_correctness:
        return rows, fail_index, correctness_matrices(correct, segments)
    return rows, fail_index


class InvariantError(RuntimeError):
    """An adversarial set or fail subset is not at accuracy 0 at the best epoch."""


def check_zero_at_best(rows: list[dict], best_epoch: int) -> list[dict]:
    """The sets that break the protocol's invariant: accuracy exactly 0 at epoch M
    on every adversarial set and on the fail subset. Empty when all hold."""
    return [{"eval_set": r["eval_set"], "attack": r["attack"], "n": r["n"],
             "n_correct": r["n_correct"]}
            for r in rows if r["epoch"] == best_epoch and r["n_correct"] > 0
            and r["eval_set"] in ("adversarial", "fail_subset")]


def enforce_zero_at_best(violations: list[dict], best_epoch: int, on_violation: str = "error",
                         where: str = "") -> None:
    """Raise :class:`InvariantError` for any violation, or with ``warn`` log it."""
    if not violations:
        log.info("invariant holds: every adversarial set and the fail subset at accuracy 0 "
                 "at the best epoch %d", best_epoch)
        return
    listed = "; ".join(f"{v['eval_set']}/{v['attack']}: {v['n_correct']} of {v['n']} correct"
                       for v in violations)
    message = (f"{where}accuracy at the best epoch {best_epoch} must be exactly 0 on every "
               f"adversarial set and the fail subset, but {listed}. The AEs were kept on "
               "other logits than the evaluation computes (other hardware, kernels or "
               "batches); raise adversarial.min_margin, or set evaluation.nonzero_at_best: "
               "warn to record it and go on")
    if on_violation == "warn":
        log.warning(message)
        return
    raise InvariantError(message)


def correctness_key(eval_set: str, attack: str) -> str:
    """The npz key of an evaluation set's correctness matrix: ``test``, ``adversarial__fgsm``."""
    from advfit.runtime.layout import NO_ATTACK

    return eval_set if attack == NO_ATTACK else f"{eval_set}__{attack}"


def correctness_matrices(correct: dict[int, np.ndarray],
                         segments: dict[tuple[str, str], slice | np.ndarray]) -> dict:
    """Boolean matrix epochs x samples of each evaluation set, plus ``epochs``.

    The very vectors that :func:`accuracy_rows` counts, so a paired test on
    them agrees with the accuracy table by construction (and is checked).
    """
    epochs = sorted(correct)
    out = {"epochs": np.asarray(epochs, dtype=np.int64)}
    for (eval_set, attack), where in segments.items():
        out[correctness_key(eval_set, attack)] = np.stack(
            [correct[e][where] for e in epochs]).astype(bool).reshape(len(epochs), -1)
    return out
