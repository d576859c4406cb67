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

A regime's training recipe (:mod:`advfit.models.recipes`: learning-rate
schedule, weight decay, Nesterov momentum, augmentation) keeps all of this:
each step's rate and augmentation are pure functions of the seed, the epoch
and the batch, and weight decay lives in the optimizer, whose variables the
state holds. A regime without recipe keys runs the very same code as before.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from advfit.models.recipes import (RECIPE_KEYS, coupled_optimizer_class, decayed_variables,
                                   fingerprint_part, resolve_recipe, step_recipe)
from advfit.runtime.io import atomic_path, file_sha256, load_npz, save_npz
from advfit.runtime.layout import list_snapshots, list_states, snapshot_name, state_name
from advfit.runtime.seeds import job_seed

log = logging.getLogger("advfit")

OPTIMIZERS = ("adam", "sgd", "rmsprop")
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "test_loss", "test_accuracy"]
STATE_FORMAT = 1


def history_columns(regime: dict) -> list[str]:
    """The history's columns: with an ``lr_schedule``, the rate of each epoch's
    last step is added as ``learning_rate``."""
    return HISTORY_COLUMNS + (["learning_rate"] if "lr_schedule" in regime else [])


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed set before (1-based) ``epoch``: depends on nothing else."""
    return job_seed(seed, "epoch", epoch)


def make_optimizer(regime: dict, model=None):
    """The regime's optimizer. With the recipe keys ``weight_decay`` (then
    ``model`` is needed: the decay applies to its kernels, or to all its
    variables) or ``nesterov``, see :func:`_make_recipe_optimizer`."""
    import keras

    name, lr = regime["optimizer"], float(regime["learning_rate"])
    if regime.get("nesterov") or regime.get("weight_decay"):
        return _make_recipe_optimizer(regime, model)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(regime.get("momentum", 0.0)))
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    raise ValueError(f"unknown optimizer {name!r}; known: {OPTIMIZERS}")


def _make_recipe_optimizer(regime: dict, model):
    """Nesterov momentum (sgd) and weight decay (advfit.models.recipes): coupled, the
    gradient of (weight_decay / 2) x the sum of squares of the decayed variables
    added to each step's gradient, before momentum or Adam's moments (PyTorch's
    ``SGD(weight_decay=...)``, Rice et al.); decoupled, Keras' own ``weight_decay``
    (w -= learning_rate x weight_decay x w at each step, apart from the
    gradient: AdamW, SGDW), other variables excluded with
    ``exclude_from_weight_decay``."""
    import keras

    recipe = resolve_recipe(regime)
    name, lr = regime["optimizer"], float(regime["learning_rate"])
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; known: {OPTIMIZERS}")
    cls, kwargs = classes[name], {"learning_rate": lr}
    if name == "sgd":
        kwargs["momentum"] = float(regime.get("momentum", 0.0))
        kwargs["nesterov"] = recipe["nesterov"]
    decay, decayed = recipe["weight_decay"], []
    if decay > 0:
        if model is None:
            raise ValueError("weight_decay: make_optimizer needs the model (its variables)")
        decayed = decayed_variables(model, recipe["weight_decay_scope"])
        if recipe["weight_decay_mode"] == "coupled":
            cls, kwargs["coupled_weight_decay"] = coupled_optimizer_class(cls), decay
        else:
            kwargs["weight_decay"] = decay
    optimizer = cls(**kwargs)
    if decay > 0 and recipe["weight_decay_mode"] == "coupled":
        optimizer.decay(decayed)
    elif decay > 0:
        keep = {id(v) for v in decayed}
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if id(v) not in keep])
    return optimizer


def compile_model(model, regime: dict) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(regime, model),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _fingerprint(regime: dict, seed: int, train, validation, test, train_labels=None) -> str:
    """What a saved state must match to be resumed from: the regime (any
    number of epochs: a longer run continues a shorter one exactly), the seed
    and the data. A changed config therefore restarts from scratch."""
    digest = hashlib.sha256()
    spec = {k: v for k, v in regime.items() if k != "epochs"}
    if spec.get("adversarial_training"):  # with its defaults: written out or not, the same run
        from advfit.models.adversarial_training import resolve_spec

        spec["adversarial_training"] = resolve_spec(spec["adversarial_training"])
        if spec["adversarial_training"]["crafting_mode"] == "inference":  # the only mode
            del spec["adversarial_training"]["crafting_mode"]  # once: old states stay valid
    # Recipe keys, resolved (nothing for a regime without them: old states stay
    # valid), with the epochs when the learning-rate schedule depends on them.
    spec = {k: v for k, v in spec.items() if k not in RECIPE_KEYS}
    if recipe := fingerprint_part(regime):
        spec["recipe"] = recipe
    digest.update(json.dumps({"regime": spec, "seed": int(seed)}, sort_keys=True).encode())
    arrays = [*train, *validation, *test] + ([] if train_labels is None else [train_labels])
    for array in map(np.ascontiguousarray, arrays):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def _extra_variables(model) -> list:
    """Model variables that ``save_weights`` leaves out (random-generator states)."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def _save_state(snapshot_dir: Path, epoch: int, model, base_seed: int, fingerprint: str,
                history: list[dict], columns: list[str] = HISTORY_COLUMNS) -> None:
    optimizer = model.optimizer.variables
    extra = _extra_variables(model)
    arrays = {f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer)}
    arrays.update({f"extra_{i}": np.asarray(v.numpy()) for i, v in enumerate(extra)})
    meta = {
        "format": STATE_FORMAT, "epoch": epoch, "base_seed": int(base_seed),
        "fingerprint": fingerprint,
        "weights_sha256": file_sha256(snapshot_dir / snapshot_name(epoch)),
        "optimizer": [v.path for v in optimizer], "extra": [v.path for v in extra],
    }
    table = np.array([[row[c] for c in columns] for row in history], dtype=np.float64)
    save_npz(snapshot_dir / state_name(epoch), meta=np.array(json.dumps(meta)),
             history=table.reshape(len(history), len(columns)), **arrays)


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
    if not weights.is_file() or file_sha256(weights) != meta.get("weights_sha256"):
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
    for files in (list_snapshots(snapshot_dir), list_states(snapshot_dir)):
        for epoch, path in files.items():
            if epoch > after:
                path.unlink(missing_ok=True)


def find_resume_point(snapshot_dir: Path, fingerprint: str) -> tuple[int, dict | None]:
    """The highest epoch whose snapshot and state are both complete, and its state."""
    snapshots = set(list_snapshots(snapshot_dir))
    for epoch in reversed(list_states(snapshot_dir)):
        if epoch in snapshots and (state := _load_state(snapshot_dir, epoch, fingerprint)):
            # Snapshots 1..epoch must all be there to be kept.
            if all(e in snapshots for e in range(1, epoch + 1)):
                return epoch, state
    return 0, None


def train_regime(model, regime: dict, train, validation, test, snapshot_dir: Path,
                 eval_batch_size: int = 1024, *, seed: int | None = None, train_labels=None,
                 resume: bool = False, keep_state: bool = False, stop_after: int | None = None):
    """Train ``model`` for ``regime['epochs']`` epochs; return the history as a DataFrame.

    ``train``, ``validation`` and ``test`` are ``(x, y)`` pairs; the test set
    is scored after every epoch. An epoch is exactly one epoch of
    ``model.fit(shuffle=True)`` with validation, without its per-call pipeline
    (:func:`_fit_epoch`). Epoch e (1-based) runs after
    ``keras.utils.set_random_seed(epoch_seed(seed, e))``; without ``seed``, one
    is drawn from NumPy's global generator (seeded by
    :func:`advfit.runtime.device.configure`). With ``resume``, training continues
    after the highest epoch of ``snapshot_dir`` that has a complete snapshot
    and a state saved with this regime (whatever its number of epochs), seed
    and data; otherwise, or when there is none, it starts from the model as
    given and removes any snapshot and state already there. ``train``'s labels
    are the true ones; ``train_labels`` are those to train on, which a regime
    with ``label_noise`` must be given (the run's ``train_labels.npz``, or
    :func:`advfit.models.label_noise.training_labels`): exactly that fraction of them
    must differ from the true ones. A regime's ``adversarial_training``
    trains each epoch on PGD AEs crafted batch by batch on the current weights
    (:mod:`advfit.models.adversarial_training`) instead, just as deterministic and
    resumable; ``attrs["adversarial_training"]`` records its
    spec (None without). The recipe keys (:mod:`advfit.models.recipes`) set the
    learning rate before every step (``lr_schedule``; the history gains a
    ``learning_rate`` column, the rate of each epoch's last step), augment each
    training batch (``augmentation``; validation and test stay clean), and
    shape the optimizer (``weight_decay``, ``nesterov``). State files are removed at
    the end unless ``keep_state``. ``stop_after`` ends the call after that
    epoch (the state is kept), as a kill would: for tests.
    """
    import keras

    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    epochs = int(regime["epochs"])
    batch_size = int(regime["batch_size"])
    base_seed = int(seed) if seed is not None else int(np.random.randint(0, 2**31 - 1))
    y_train = _labels_to_train_on(regime, train[1], train_labels)
    # The fingerprint hashes the labels trained on, the true ones and the regime.
    fingerprint = _fingerprint(regime, base_seed, train, validation, test, y_train)
    train = (train[0], y_train)
    resolve_recipe(regime, np.shape(train[0])[1:])  # a hand-built regime's bad key, named
    compile_model(model, regime)
    columns = history_columns(regime)
    steps = step_recipe(regime, len(y_train), base_seed)  # per-step rate and augmentation

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
        history = [dict(zip(columns, row)) for row in state["history"][:start].tolist()]
        for row in history:
            row["epoch"] = int(row["epoch"])
        log.info("resuming after epoch %d of %d from %s", start, epochs, snapshot_dir)
    _clear(snapshot_dir, after=start)
    trainer = None
    if regime.get("adversarial_training"):  # after the restore: the step builds the optimizer
        from advfit.models.adversarial_training import AdversarialTrainer

        trainer = AdversarialTrainer(model, regime["adversarial_training"], batch_size, steps)
    else:
        train = as_tensors(train)
    validation, test = as_tensors(validation), as_tensors(test)

    for epoch in range(start, epochs):
        number = epoch + 1
        keras.utils.set_random_seed(epoch_seed(base_seed, number))
        if trainer is None and steps is None:
            logs = _fit_epoch(model, train, validation, epoch, batch_size)
        elif trainer is None:
            logs = _fit_epoch(model, train, validation, epoch, batch_size, steps=steps)
        else:
            logs = _adversarial_epoch(model, trainer, train, validation,
                                      epoch_seed(base_seed, number), number)
        scores = _score(model, test, eval_batch_size)  # the protocol scores the test set per epoch
        row = {"epoch": number, "train_loss": logs["loss"], "train_accuracy": logs["accuracy"],
               "val_loss": logs["val_loss"], "val_accuracy": logs["val_accuracy"],
               "test_loss": scores["loss"], "test_accuracy": scores["accuracy"]}
        if "learning_rate" in columns:
            row["learning_rate"] = steps.epoch_rate(number)
        history.append(row)
        with atomic_path(snapshot_dir / snapshot_name(number), suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        _save_state(snapshot_dir, number, model, base_seed, fingerprint, history, columns)
        for old, path in list_states(snapshot_dir).items():  # only the latest one is needed
            if old < number:
                path.unlink(missing_ok=True)
        log.info("epoch %d: %s", number,
                 ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
        if stop_after is not None and number >= stop_after and number < epochs:
            return _history_table(history, trainer, columns)

    if not keep_state:
        for path in list_states(snapshot_dir).values():
            path.unlink(missing_ok=True)
    return _history_table(history, trainer, columns)


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


def _run_steps(model, step, pair, batches, before_step=None) -> dict:
    """Reset the metrics, run ``step`` on every batch of ``pair``; the epoch's
    logs as ``fit`` and ``evaluate`` report them (the metrics' results, or the
    last step's logs when a custom step returns other keys). ``before_step(b,
    x_b)``, for training with a recipe, is called before batch b's step and
    returns the images to train on (augmented or not)."""
    import tensorflow as tf

    x, y = pair
    model.reset_metrics()
    logs = None
    for number, index in enumerate(batches):
        if before_step is None:
            logs = step(iter([(tf.gather(x, index), tf.gather(y, index))]))
        else:
            x_batch = tf.convert_to_tensor(before_step(number, tf.gather(x, index)))
            logs = step(iter([(x_batch, tf.gather(y, index))]))
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


def _fit_epoch(model, train, validation, epoch: int, batch_size: int, steps=None) -> dict:
    """One epoch of ``model.fit(*train, validation_data=validation, shuffle=True,
    initial_epoch=epoch, epochs=epoch + 1)``: its training and validation loss
    and accuracy. ``train`` and ``validation`` are tensors (:func:`as_tensors`).
    ``steps`` (:class:`advfit.models.recipes.StepRecipe`) sets each step's
    learning rate and augments each training batch; the training loss and
    accuracy are then those of the batches trained on, as ``fit`` reports them."""
    model.make_train_function()
    order = fit_permutation(int(train[1].shape[0]))
    before_step = None if steps is None else functools.partial(
        steps.before_step, model.optimizer, epoch + 1)
    logs = _run_steps(model, model.train_function, train, _batches(order, batch_size),
                      before_step)
    # An empty validation set (paper 000 has none) gives NaN validation columns.
    logs["val_loss"] = logs["val_accuracy"] = float("nan")
    if int(validation[1].shape[0]):
        logs.update({f"val_{k}": v for k, v in _score(model, validation, batch_size).items()})
    return logs


def _adversarial_epoch(model, trainer, train, validation, seed: int, epoch: int) -> dict:
    """One epoch of adversarial training (1-based ``epoch``); validation scored on
    clean data, as ``fit`` does."""
    logs = trainer.fit_epoch(*train, seed=seed, epoch=epoch)
    logs["val_loss"] = logs["val_accuracy"] = float("nan")
    if int(validation[1].shape[0]):
        scores = _score(model, validation, trainer.batch_size)
        logs["val_loss"], logs["val_accuracy"] = scores["loss"], scores["accuracy"]
    return logs


def _labels_to_train_on(regime: dict, y_true, train_labels) -> np.ndarray:
    """``train_labels`` (the true labels without), checked against the regime's label_noise:
    a noisy regime given clean labels, or the reverse, would silently train the wrong run."""
    y_true = np.asarray(y_true)
    fraction = float(regime.get("label_noise", 0.0))
    if train_labels is None:
        if fraction:
            raise ValueError(f"the regime's label_noise is {fraction}: pass the labels to train "
                             "on as train_labels (the run's train_labels.npz, or "
                             "advfit.models.label_noise.training_labels)")
        return y_true
    labels = np.asarray(train_labels)
    if labels.shape != y_true.shape:
        raise ValueError(f"train_labels has shape {labels.shape}, the training split "
                         f"{y_true.shape}")
    n_flipped, expected = int(np.count_nonzero(labels != y_true)), round(fraction * len(y_true))
    if n_flipped != expected:
        raise ValueError(f"train_labels differ from the true labels in {n_flipped} places; "
                         f"the regime's label_noise {fraction} flips {expected}")
    if n_flipped:
        log.info("label noise: %d of %d training labels flipped", n_flipped, len(labels))
    return labels


def _history_table(history: list[dict], trainer=None, columns: list[str] = HISTORY_COLUMNS):
    """The history as a DataFrame; ``attrs["adversarial_training"]`` is the resolved
    spec of the regime's adversarial training, None without (for ``training.json``)."""
    import pandas as pd

    table = pd.DataFrame(history, columns=columns)
    table.attrs["adversarial_training"] = None if trainer is None else dict(trainer.spec)
    return table
