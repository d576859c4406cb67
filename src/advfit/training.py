"""Training one split x regime, with a snapshot after every epoch, resumable.

Epochs are driven one at a time, each with its own seed derived from the
job's seed and the epoch number, so that epoch e shuffles the same way
whether the process has run every epoch before it or has just resumed from
epoch e - 1. After every epoch the weights go to ``epoch_NNN.weights.h5`` and
everything else needed to continue bit-identically (the optimizer's
variables, the model's random-generator states, the per-epoch seed base and
the history so far) to ``epoch_NNN.state.npz`` beside it, both written
atomically, the state last. A run started again with ``resume=True``
continues after the highest epoch that has both files; only the latest state
is kept, and every state file is removed once the last epoch is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np

from .io import atomic_path, load_npz, save_npz
from .seeds import job_seed

log = logging.getLogger("advfit")

OPTIMIZERS = ("adam", "sgd", "rmsprop")
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "test_loss", "test_accuracy"]
STATE_FORMAT = 1
_SNAPSHOT = re.compile(r"^epoch_(\d{3,})\.weights\.h5$")
_STATE = re.compile(r"^epoch_(\d{3,})\.state\.npz$")


def snapshot_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.weights.h5"


def list_snapshots(snapshot_dir) -> dict[int, Path]:
    """Epoch -> snapshot file of a snapshot folder, epochs ascending (any number of digits)."""
    found = {}
    for path in Path(snapshot_dir).glob("epoch_*.weights.h5"):
        match = re.fullmatch(r"epoch_(\d+)\.weights\.h5", path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def state_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.state.npz"


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed set before (1-based) ``epoch``: depends on nothing else."""
    return job_seed(seed, "epoch", epoch)


def noisy_labels(y, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """``y`` with exactly ``round(fraction * len(y))`` labels replaced by another class.

    Symmetric label noise (Zhang et al. 2017; Arpit et al. 2017), the regime
    key ``label_noise``: the flipped positions are a seeded sample without
    replacement, and each flipped label becomes one of the other
    ``n_classes - 1`` classes, uniformly. Pure: the same arguments always give
    the same labels; ``fraction`` 0 returns an unchanged copy.
    """
    y = np.asarray(y)
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {fraction}")
    out = y.copy()
    n_flip = int(round(fraction * len(y)))
    if n_flip == 0:
        return out
    if n_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels outside 0..{n_classes - 1}")
    rng = np.random.default_rng(int(seed))
    where = np.sort(rng.choice(len(y), size=n_flip, replace=False))
    shift = rng.integers(1, n_classes, size=n_flip)  # never 0: always another class
    out[where] = ((y[where].astype(np.int64) + shift) % n_classes).astype(y.dtype)
    return out


def training_labels(y, regime: dict, n_classes: int, seed: int) -> tuple[np.ndarray, dict]:
    """The labels ``regime`` trains on, and the record of how they were made.

    ``y`` are the training split's true labels and ``seed`` the job's seed
    (from the run's seed, dataset, model, regime and split). Without
    ``label_noise`` (or with 0) the labels are ``y`` unchanged. The record
    (``fraction``, ``seed``, ``n_flipped``, ``n``) goes to ``training.json``;
    :func:`recorded_training_labels` rebuilds the same labels from it.
    """
    fraction = float(regime.get("label_noise", 0.0))
    noise_seed = job_seed(seed, "label_noise")
    labels = noisy_labels(y, fraction, n_classes, noise_seed)
    record = {"fraction": fraction, "seed": noise_seed,
              "n_flipped": int(np.count_nonzero(labels != np.asarray(y))), "n": int(len(labels))}
    return labels, record


def recorded_training_labels(y, record: dict | None, n_classes: int) -> np.ndarray:
    """The training labels described by a ``training.json`` ``label_noise`` record.

    ``None`` (a run without the record) means the true labels. Raises
    ValueError when the rebuilt labels do not match the record.
    """
    y = np.asarray(y)
    if not record or not record.get("fraction"):
        return y
    labels = noisy_labels(y, record["fraction"], n_classes, record["seed"])
    if len(labels) != record["n"] or np.count_nonzero(labels != y) != record["n_flipped"]:
        raise ValueError(f"the training labels cannot be rebuilt from {record}: "
                         f"{len(labels)} labels, {np.count_nonzero(labels != y)} flipped")
    return labels


def make_optimizer(regime: dict):
    import keras

    name, lr = regime["optimizer"], float(regime["learning_rate"])
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(regime.get("momentum", 0.0)))
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    raise ValueError(f"unknown optimizer {name!r}; known: {OPTIMIZERS}")


def compile_model(model, regime: dict) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(regime),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _fingerprint(regime: dict, seed: int, train, validation, test) -> str:
    """What a saved state must match to be resumed from: the regime (any
    number of epochs: a longer run continues a shorter one exactly), the seed
    and the data. A changed config therefore restarts from scratch."""
    digest = hashlib.sha256()
    spec = {k: v for k, v in regime.items() if k != "epochs"}
    if spec.get("adversarial_training"):  # with its defaults: written out or not, the same run
        from .adversarial_training import resolve_spec

        spec["adversarial_training"] = resolve_spec(spec["adversarial_training"])
    digest.update(json.dumps({"regime": spec, "seed": int(seed)}, sort_keys=True).encode())
    for x, y in (train, validation, test):
        for array in (x, y):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.data)
    return digest.hexdigest()


def _extra_variables(model) -> list:
    """Model variables that ``save_weights`` leaves out (random-generator states)."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_state(snapshot_dir: Path, epoch: int, model, base_seed: int, fingerprint: str,
                history: list[dict]) -> None:
    optimizer = model.optimizer.variables
    extra = _extra_variables(model)
    arrays = {f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer)}
    arrays.update({f"extra_{i}": np.asarray(v.numpy()) for i, v in enumerate(extra)})
    meta = {
        "format": STATE_FORMAT, "epoch": epoch, "base_seed": int(base_seed),
        "fingerprint": fingerprint,
        "weights_sha256": _file_sha256(snapshot_dir / snapshot_name(epoch)),
        "optimizer": [v.path for v in optimizer], "extra": [v.path for v in extra],
    }
    table = np.array([[row[c] for c in HISTORY_COLUMNS] for row in history], dtype=np.float64)
    save_npz(snapshot_dir / state_name(epoch), meta=np.array(json.dumps(meta)),
             history=table.reshape(len(history), len(HISTORY_COLUMNS)), **arrays)


def _epochs_present(snapshot_dir: Path, pattern: re.Pattern) -> list[int]:
    if not snapshot_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in snapshot_dir.iterdir() if (m := pattern.match(p.name)))


def _load_state(snapshot_dir: Path, epoch: int, fingerprint: str) -> dict | None:
    """The state after ``epoch`` if it is complete and belongs to this run, else None."""
    path, weights = snapshot_dir / state_name(epoch), snapshot_dir / snapshot_name(epoch)
    try:
        state = load_npz(path)
        meta = json.loads(str(state["meta"]))
    except Exception as error:  # unreadable: treat as absent
        log.warning("ignoring unreadable training state %s: %s", path, error)
        return None
    if meta.get("format") != STATE_FORMAT or meta.get("fingerprint") != fingerprint:
        log.info("training state %s belongs to another regime, seed or data: starting afresh",
                 path.name)
        return None
    if not weights.is_file() or _file_sha256(weights) != meta.get("weights_sha256"):
        log.warning("snapshot %s does not match its training state: ignoring both", weights.name)
        return None
    return {**state, "meta": meta}


def _restore(model, state: dict, snapshot_dir: Path, epoch: int) -> None:
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)  # before the weights: they carry its variables too
    model.load_weights(snapshot_dir / snapshot_name(epoch))
    meta = state["meta"]
    # Variables are matched by position and shape: their paths carry Keras'
    # per-process name counters (conv2d_3, adam_1, ...), which may differ.
    for variables, kind in ((optimizer.variables, "optimizer"), (_extra_variables(model), "extra")):
        saved = [state[f"{kind}_{i}"] for i in range(len(meta[kind]))]
        if [tuple(v.shape) for v in variables] != [a.shape for a in saved]:
            raise ValueError(f"the saved {kind} variables {meta[kind]} do not match this "
                             f"model's {[v.path for v in variables]}")
        for variable, value in zip(variables, saved):
            variable.assign(value)


def _clear(snapshot_dir: Path, after: int = 0) -> None:
    """Remove snapshots and states of epochs after ``after`` (all with 0), and
    the temporary files of writes that a kill interrupted."""
    for stray in snapshot_dir.glob(".*.tmp*"):
        stray.unlink(missing_ok=True)
    for pattern in (_SNAPSHOT, _STATE):
        for epoch in _epochs_present(snapshot_dir, pattern):
            if epoch > after:
                name = snapshot_name(epoch) if pattern is _SNAPSHOT else state_name(epoch)
                (snapshot_dir / name).unlink(missing_ok=True)


def find_resume_point(snapshot_dir: Path, fingerprint: str) -> tuple[int, dict | None]:
    """The highest epoch whose snapshot and state are both complete, and its state."""
    snapshots = set(_epochs_present(snapshot_dir, _SNAPSHOT))
    for epoch in reversed(_epochs_present(snapshot_dir, _STATE)):
        if epoch in snapshots and (state := _load_state(snapshot_dir, epoch, fingerprint)):
            # Snapshots 1..epoch must all be there to be kept.
            if all(e in snapshots for e in range(1, epoch + 1)):
                return epoch, state
    return 0, None


def train_regime(model, regime: dict, train, validation, test, snapshot_dir: Path,
                 eval_batch_size: int = 1024, *, seed: int | None = None, resume: bool = False,
                 keep_state: bool = False, stop_after: int | None = None):
    """Train ``model`` for ``regime['epochs']`` epochs; return the history as a DataFrame.

    ``train``, ``validation`` and ``test`` are ``(x, y)`` pairs; the test set
    is scored after every epoch. An epoch is exactly one epoch of
    ``model.fit(shuffle=True)`` with validation, without its per-call pipeline
    (:func:`_fit_epoch`). Epoch e (1-based) runs after
    ``keras.utils.set_random_seed(epoch_seed(seed, e))``; without ``seed``, one
    is drawn from NumPy's global generator (seeded by
    :func:`advfit.runtime.configure`). With ``resume``, training continues
    after the highest epoch of ``snapshot_dir`` that has a complete snapshot
    and a state saved with this regime (whatever its number of epochs), seed
    and data; otherwise, or when there is none, it starts from the model as
    given and removes any snapshot and state already there. A regime's
    ``label_noise`` replaces that fraction of ``train``'s labels before training
    (:func:`training_labels`, seeded from the seed); the returned table's
    ``attrs["label_noise"]`` records it. A regime's ``adversarial_training``
    trains each epoch on PGD AEs crafted batch by batch on the current weights
    (:mod:`advfit.adversarial_training`) instead, just as deterministic and
    resumable; ``attrs["adversarial_training"]`` records its
    spec (None without). State files are removed at
    the end unless ``keep_state``. ``stop_after`` ends the call after that
    epoch (the state is kept), as a kill would: for tests.
    """
    import keras
    import pandas as pd

    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    epochs = int(regime["epochs"])
    batch_size = int(regime["batch_size"])
    base_seed = int(seed) if seed is not None else int(np.random.randint(0, 2**31 - 1))
    # The regime's label_noise applies here, so that no caller can miss it;
    # the fingerprint hashes the true labels and the regime, noise included.
    fingerprint = _fingerprint(regime, base_seed, train, validation, test)
    y_train, noise = training_labels(train[1], regime, int(model.output_shape[-1]), base_seed)
    if noise["n_flipped"]:
        log.info("label noise: %d of %d training labels flipped", noise["n_flipped"], noise["n"])
    train = (train[0], y_train)
    compile_model(model, regime)

    start, state, history = 0, None, []
    if resume:
        start, state = find_resume_point(snapshot_dir, fingerprint)
    if state is not None:
        # A state past the last epoch (the config asks for fewer epochs now)
        # holds this run too: epoch e never depends on how many follow it.
        start = min(start, epochs)
        if start < epochs:
            _restore(model, state, snapshot_dir, start)
        else:
            model.optimizer.build(model.trainable_variables)
            model.load_weights(snapshot_dir / snapshot_name(start))
        history = [dict(zip(HISTORY_COLUMNS, row)) for row in state["history"][:start].tolist()]
        for row in history:
            row["epoch"] = int(row["epoch"])
        log.info("resuming after epoch %d of %d from %s", start, epochs, snapshot_dir)
    _clear(snapshot_dir, after=start)
    trainer = None
    if regime.get("adversarial_training"):  # after the restore: the step builds the optimizer
        from .adversarial_training import AdversarialTrainer

        trainer = AdversarialTrainer(model, regime["adversarial_training"], batch_size)
    else:
        train = as_tensors(train)
    validation, test = as_tensors(validation), as_tensors(test)

    for epoch in range(start, epochs):
        number = epoch + 1
        keras.utils.set_random_seed(epoch_seed(base_seed, number))
        if trainer is None:
            logs = _fit_epoch(model, train, validation, epoch, batch_size)
        else:
            logs = _adversarial_epoch(model, trainer, train, validation,
                                      epoch_seed(base_seed, number))
        scores = _score(model, test, eval_batch_size)  # the protocol scores the test set per epoch
        row = {"epoch": number, "train_loss": logs["loss"], "train_accuracy": logs["accuracy"],
               "val_loss": logs["val_loss"], "val_accuracy": logs["val_accuracy"],
               "test_loss": scores["loss"], "test_accuracy": scores["accuracy"]}
        history.append(row)
        with atomic_path(snapshot_dir / snapshot_name(number), suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        _save_state(snapshot_dir, number, model, base_seed, fingerprint, history)
        for old in _epochs_present(snapshot_dir, _STATE):  # only the latest state is needed
            if old < number:
                (snapshot_dir / state_name(old)).unlink(missing_ok=True)
        log.info("epoch %d: %s", number,
                 ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
        if stop_after is not None and number >= stop_after and number < epochs:
            return _history_table(history, noise, trainer)

    if not keep_state:
        for old in _epochs_present(snapshot_dir, _STATE):
            (snapshot_dir / state_name(old)).unlink(missing_ok=True)
    return _history_table(history, noise, trainer)


def as_tensors(pair) -> tuple:
    """``(x, y)`` as TensorFlow tensors, converted once for every epoch."""
    import tensorflow as tf

    return tuple(tf.convert_to_tensor(np.asarray(a)) for a in pair)


# One epoch without model.fit (issue 13). ``model.fit`` called once per epoch
# (what a bit-identical resume needs: each epoch's shuffle comes from its own
# seed) rebuilt its input pipeline every epoch: the arrays converted to
# tensors and captured by a new tf.data graph, a new iterator warming up, and
# the same again for the validation and test sets. On full CIFAR-10 that cost
# about a sixth of each epoch. The loop below feeds the very same batches to
# Keras' own traced train and test steps (``model.train_function`` and
# ``model.test_function``, which take any iterator of batches) from tensors
# converted once: same order, same steps, same metric accumulation, so the
# snapshots and the history are bit-identical to the per-epoch ``fit`` and
# ``evaluate`` (tests/test_training_tensors.py compares them).


def fit_permutation(n: int):
    """The order ``model.fit(shuffle=True)`` draws for an epoch of ``n`` samples.

    Keras' array adapter draws it with ``tf.random.shuffle`` inside a
    ``tf.data`` map function, whose op seed comes from the global seed and the
    function's graph; the same function in the same pipeline gives the same
    permutation under the same global seed (set just before, per epoch).
    """
    import tensorflow as tf

    def permutation(_):
        indices = tf.range(n, dtype=tf.int64)
        indices = tf.random.shuffle(indices)
        return indices

    return next(iter(tf.data.Dataset.range(1).map(permutation).prefetch(1)))


def _batches(order, batch_size: int) -> list:
    """``order`` cut into consecutive batches, the last one partial (as ``fit`` does)."""
    n = int(order.shape[0])
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def _run_steps(model, step, pair, batches) -> dict:
    """Reset the metrics, run ``step`` on every batch of ``pair``; the epoch's
    logs as ``fit`` and ``evaluate`` report them (the metrics' results, or the
    last step's logs when a custom step returns other keys)."""
    import tensorflow as tf

    x, y = pair
    model.reset_metrics()
    logs = None
    for index in batches:
        logs = step(iter([(tf.gather(x, index), tf.gather(y, index))]))
    results = model.get_metrics_result()
    if not (isinstance(logs, dict) and set(logs) == set(results)):
        results = logs or {}
    return {key: float(value) for key, value in results.items()}


def _score(model, pair, batch_size: int) -> dict:
    """``model.evaluate(*pair, batch_size=batch_size)``: loss and metrics, batches in order."""
    import tensorflow as tf

    model.make_test_function()
    order = tf.range(int(pair[1].shape[0]), dtype=tf.int64)
    return _run_steps(model, model.test_function, pair, _batches(order, batch_size))


def _fit_epoch(model, train, validation, epoch: int, batch_size: int) -> dict:
    """One epoch of ``model.fit(*train, validation_data=validation, shuffle=True,
    initial_epoch=epoch, epochs=epoch + 1)``: its training and validation loss
    and accuracy. ``train`` and ``validation`` are tensors (:func:`as_tensors`)."""
    model.make_train_function()
    order = fit_permutation(int(train[1].shape[0]))
    logs = _run_steps(model, model.train_function, train, _batches(order, batch_size))
    # An empty validation set (paper 000 has none) gives NaN validation columns.
    logs["val_loss"] = logs["val_accuracy"] = float("nan")
    if int(validation[1].shape[0]):
        logs.update({f"val_{k}": v for k, v in _score(model, validation, batch_size).items()})
    return logs


def _adversarial_epoch(model, trainer, train, validation, seed: int) -> dict:
    """One epoch of adversarial training; validation scored on clean data, as ``fit`` does."""
    logs = trainer.fit_epoch(*train, seed=seed)
    logs["val_loss"] = logs["val_accuracy"] = float("nan")
    if int(validation[1].shape[0]):
        scores = _score(model, validation, trainer.batch_size)
        logs["val_loss"], logs["val_accuracy"] = scores["loss"], scores["accuracy"]
    return logs


def _history_table(history: list[dict], noise: dict, trainer=None):
    """The history as a DataFrame; ``attrs["label_noise"]`` is the record of
    :func:`training_labels` and ``attrs["adversarial_training"]`` the resolved
    spec of the regime's adversarial training, None without (both for
    ``training.json``)."""
    import pandas as pd

    table = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    table.attrs["label_noise"] = noise
    table.attrs["adversarial_training"] = None if trainer is None else dict(trainer.spec)
    return table
