"""Evaluating every snapshot on every evaluation set."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("advfit")


def correctness_by_epoch(model, snapshots: dict[int, Path], x: np.ndarray, y: np.ndarray,
                         batch_size: int = 1024) -> dict[int, np.ndarray]:
    """Boolean 'classified correctly' vector of each snapshot on ``(x, y)``.

    All evaluation sets are scored in one pass per snapshot: the model and its
    traced forward pass are built once; only the weights change.
    """
    forward = traced_forward(model)
    out = {}
    for epoch in sorted(snapshots):
        model.load_weights(snapshots[epoch])
        out[epoch] = np.argmax(predict_logits(forward, x, batch_size), axis=1) == y
    return out


def traced_forward(model):
    """``model(x, training=False)`` traced once for any batch size.

    ``model.predict`` builds a tf.data pipeline and a callback loop on every
    call: on the default run's ~2000 samples per snapshot that costs as much
    as the network itself (benchmarks/evaluation.py). The traced function
    reads the model's variables, so it stays valid when weights are loaded.
    """
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def predict_logits(forward, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``x`` in batches of ``batch_size`` (the same batches as predict)."""
    if len(x) == 0:  # convolutions refuse empty batches: shape (0, classes) from one image
        return forward(np.zeros((1, *x.shape[1:]), np.float32)).numpy()[:0]
    return np.concatenate([forward(x[i:i + batch_size]).numpy()
                           for i in range(0, len(x), batch_size)])


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
                   train_labels: np.ndarray | None = None, return_correctness: bool = False):
    """Score every snapshot of one split x regime on every evaluation set.

    ``train_labels``, when given, replace the training split's true labels in
    the ``train`` set (the labels the model was trained on, under a regime's
    ``label_noise``); every other set is scored against its true labels.
    Returns the tidy rows and the fail subset (pooled indices of the test
    samples that the best snapshot misclassifies). The fail subset's rows are
    read off the test set's predictions, so it costs no extra inference.
    With ``return_correctness``, also the per-example correctness of every
    evaluation set (:func:`correctness_matrices`), for the paired tests.
    """
    from .aggregate import NO_ATTACK
    from .models import build_model
    from .training import snapshot_name

    snapshot_dir = Path(snapshot_dir)
    epochs = sorted(int(p.name[6:9]) for p in snapshot_dir.glob("epoch_*.weights.h5"))
    snapshots = {e: snapshot_dir / snapshot_name(e) for e in epochs}
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

    model = build_model(model_name, data.x.shape[1:], data.n_classes)
    log.info("evaluating %d snapshots on %d samples", len(snapshots), len(y))
    correct = correctness_by_epoch(model, snapshots, x, y, batch_size)

    test = segments[("test", NO_ATTACK)]
    failed = ~correct[best_epoch][test]
    fail_positions = np.arange(test.start, test.stop)[failed]
    segments = {**{k: v for k, v in segments.items() if k[0] != "adversarial"},
                ("fail_subset", NO_ATTACK): fail_positions,
                **{k: v for k, v in segments.items() if k[0] == "adversarial"}}
    fail_index = np.asarray(split["test"])[failed]
    rows = accuracy_rows(correct, segments)
    if return_correctness:
        return rows, fail_index, correctness_matrices(correct, segments)
    return rows, fail_index


def correctness_key(eval_set: str, attack: str) -> str:
    """The npz key of an evaluation set's correctness matrix: ``test``, ``adversarial__fgsm``."""
    from .aggregate import NO_ATTACK

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
