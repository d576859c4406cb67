"""Benchmark 9: training throughput of ``train_regime`` against one plain ``model.fit``.

Full CIFAR-10 (the real copy in ../shared/data), split 0 of paper 002's
5-fold CV (40 000 training, 10 000 validation, 10 000 test images), LeNet-5,
``configs/paper002_cifar10.yaml``'s ``overfit`` regime (Adam, lr 0.0024, batch
32), the TensorFlow set-up of a ``train_model`` job (``runtime.configure``:
``--threads`` threads, deterministic kernels). In one run, one after the other:

- the anchor: ONE plain ``model.fit(x, y, epochs=N, batch_size=32,
  validation_data=validation, shuffle=True)`` call on the same arrays;
- ``advfit.models.training.train_regime`` for N epochs, exactly as the rule calls it
  (per-epoch seeds, snapshot and resume state after every epoch, the test set
  scored after every epoch), with its parts timed: the epoch's training with
  validation, the test scoring, the snapshot and state files;
- with ``--before``, train_regime as it was before issue 13 (one
  ``model.fit`` and one ``model.evaluate`` of the test set per epoch, on the
  NumPy arrays), its old per-epoch functions patched in; its history must be
  bit-identical to the new one's (checked, printed);
- they alternate for ``--rounds`` rounds (in order in odd rounds, in reverse
  in even ones), so that a drifting load on a shared
  machine hits both alike; wall and CPU time (of this process) are pooled.

Throughput is training images per second (40 000 per epoch, validation and
test scoring counted as cost). The first epoch of each traces its functions;
"steady" figures are over epochs 2..N.

    python benchmarks/training.py [--epochs 3] [--rounds 2] [--before] [--threads 1] [--wait-quiet 600]

Writes benchmarks/out/training.csv.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import begin, finish, micro_parser  # noqa: E402

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

CIFAR = _HERE.parent.parent / "shared" / "data" / "cifar-10-batches-py"
REGIME = {"optimizer": "adam", "learning_rate": 0.0024, "batch_size": 32}


def load_split(folder: Path, n_train: int | None, seed: int = 0):
    """Split 0 of the 5-fold CV of (a stratified slice of) CIFAR-10, as a job sees it."""
    from advfit.data.datasets import PooledData, prepared_arrays, read_dataset
    from advfit.data.sources import resolve_local
    from advfit.data.splits import make_splits

    copy = resolve_local("cifar10", folder, verify=False)
    spec = {"name": "cifar10", **({"subset": {"train": n_train}} if n_train else {})}
    data = PooledData(prepared_arrays(read_dataset(spec, str(copy.folder))))
    split = make_splits(data, "kfold", 5, seed)[0]
    return tuple(data.take(split[part]) for part in ("train", "validation", "test"))


class _EpochClock:
    """Wall time at the end of every epoch, from train_regime's log lines."""

    def __init__(self):
        self.marks = []

    def handler(self):
        clock = self

        class Handler(logging.Handler):
            def emit(self, record):
                if record.getMessage().startswith("epoch "):
                    clock.marks.append(time.perf_counter())

        return Handler(level=logging.INFO)


def plain_fit(train, validation, epochs: int, seed: int) -> dict:
    """The anchor: one model.fit call; seconds per epoch from a callback."""
    import keras

    from advfit.models.architectures import build_model
    from advfit.models.training import compile_model

    keras.utils.set_random_seed(seed)
    model = build_model("lenet5", train[0].shape[1:], 10)
    compile_model(model, REGIME)
    marks = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append(time.perf_counter())

    start, cpu = time.perf_counter(), time.process_time()
    fit = model.fit(*train, validation_data=validation, epochs=epochs, batch_size=32,
                    shuffle=True, verbose=0, callbacks=[Clock()])
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"total": total, "cpu": cpu, "epochs": _diffs(start, marks),
            "val_accuracy": [round(v, 4) for v in fit.history["val_accuracy"]]}


def _fit_epoch_before(model, train, validation, epoch: int, batch_size: int) -> dict:
    """advfit.models.training._fit_epoch as it was before issue 13: one model.fit per epoch."""
    fit = model.fit(*train, validation_data=validation if len(validation[1]) else None,
                    initial_epoch=epoch, epochs=epoch + 1, batch_size=batch_size,
                    shuffle=True, verbose=0)
    return {"val_loss": float("nan"), "val_accuracy": float("nan"),
            **{key: float(values[-1]) for key, values in fit.history.items()}}


def _score_before(model, pair, batch_size: int) -> dict:
    """The test scoring as it was before issue 13: model.evaluate."""
    loss, accuracy = model.evaluate(*pair, batch_size=batch_size, verbose=0)
    return {"loss": float(loss), "accuracy": float(accuracy)}


def advfit_train(train, validation, test, epochs: int, seed: int, before: bool = False) -> dict:
    """train_regime as the rule calls it, with its parts timed; ``before``: with
    the per-epoch functions it had before issue 13 (``model.fit`` and
    ``model.evaluate`` on the NumPy arrays every epoch), patched in."""
    import keras

    from advfit.models.architectures import training
    from advfit.models.architectures import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("lenet5", train[0].shape[1:], 10)
    parts = {"fit": 0.0, "test": 0.0, "save": 0.0}

    def timed(name, function, only=lambda *a, **k: True):
        def wrapper(*args, **kwargs):
            if not only(*args, **kwargs):
                return function(*args, **kwargs)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] += time.perf_counter() - started
        return wrapper

    # The parts: the epoch's training + validation, the test scoring (the
    # _score call with eval_batch_size 1024; validation uses the batch size),
    # the snapshot and the state file.
    original = {name: getattr(training, name) for name in ("_fit_epoch", "_save_state",
                                                           "_score", "as_tensors")}
    if before:
        training._fit_epoch, training._score = _fit_epoch_before, _score_before
        training.as_tensors = lambda pair: pair
    training._fit_epoch = timed("fit", training._fit_epoch)
    training._save_state = timed("save", training._save_state)
    training._score = timed("test", training._score,
                            only=lambda model, pair, batch_size: batch_size == 1024)
    save_weights = model.save_weights
    model.save_weights = timed("save", save_weights)

    clock = _EpochClock()
    handler = clock.handler()
    logger = logging.getLogger("advfit")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with tempfile.TemporaryDirectory(prefix="advfit-bench-train-") as folder:
            start, cpu = time.perf_counter(), time.process_time()
            history = training.train_regime(model, {**REGIME, "epochs": epochs}, train,
                                             validation, test, Path(folder), seed=seed)
            total, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        for name, function in original.items():
            setattr(training, name, function)
    return {"total": total, "cpu": cpu, "epochs": _diffs(start, clock.marks),
            "parts": {k: round(v, 2) for k, v in parts.items()},
            "val_accuracy": [round(v, 4) for v in history["val_accuracy"]],
            "test_accuracy": [round(v, 4) for v in history["test_accuracy"]],
            "history": history}


def _diffs(start: float, marks: list[float]) -> list[float]:
    out, last = [], start
    for mark in marks:
        out.append(mark - last)
        last = mark
    return out


def summarise(name: str, runs: list[dict], anchor: dict, n: int, epochs: int) -> dict:
    """Pooled figures of one variant's runs against the anchor's (same process, same run)."""
    total = sum(r["total"] for r in runs)
    cpu = sum(r["cpu"] for r in runs)
    row = {"variant": name, "runs": len(runs), "epochs": epochs, "n_train": n,
           "wall_s": round(total, 2), "cpu_s": round(cpu, 2),
           "images_per_s": round(n * epochs * len(runs) / total, 1),
           "ratio_wall": round(anchor["wall"] / total * len(runs) / anchor["runs"], 3),
           "ratio_cpu": round(anchor["cpu"] / cpu * len(runs) / anchor["runs"], 3),
           "epoch_s": " | ".join(" ".join(f"{s:.2f}" for s in r["epochs"]) for r in runs)}
    if epochs > 1:
        steady = sum(sum(r["epochs"][1:]) for r in runs) / (len(runs) * (epochs - 1))
        row["steady_ratio_wall"] = round(anchor["steady"] / steady, 3)
    # Per-epoch ratio (wall, mean over runs): is it stable from epoch to epoch?
    mine = [sum(r["epochs"][i] for r in runs) / len(runs) for i in range(epochs)]
    row["ratio_per_epoch"] = " ".join(f"{a / m:.3f}" for a, m in zip(anchor["per_epoch"], mine))
    if "parts" in runs[0]:
        for part in runs[0]["parts"]:
            row[f"{part}_s"] = round(sum(r["parts"][part] for r in runs), 2)
        per_run_anchor = anchor["wall"] / anchor["runs"] * len(runs)
        row["test_share_of_gap"] = round(row["test_s"] / max(total - per_run_anchor, 1e-9), 3)
        row["ratio_wall_without_test"] = round(per_run_anchor / (total - row["test_s"]), 3)
    row["val_accuracy"] = " | ".join(" ".join(str(v) for v in r["val_accuracy"]) for r in runs)
    return row


def main() -> None:
    parser = micro_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of (anchor, train_regime), the order alternating from "
                             "round to round so that a drifting load hits both alike")
    parser.add_argument("--train", type=int, default=None,
                        help="stratified slice of CIFAR-10's 50 000 training images "
                             "(default: all, i.e. 40 000 in split 0)")
    parser.add_argument("--cifar", default=str(CIFAR))
    parser.add_argument("--before", action="store_true",
                        help="also run train_regime as before issue 13 (one model.fit and one "
                             "model.evaluate per epoch on the NumPy arrays), patched in")
    args = parser.parse_args()
    if not Path(args.cifar).is_dir():
        sys.exit(f"no CIFAR-10 at {args.cifar}: this benchmark needs the real data")

    info, account = begin(args)
    from advfit import runtime

    runtime.configure(args.threads, seed=args.seed)
    train, validation, test = load_split(Path(args.cifar), args.train, args.seed)
    n = len(train[1])
    print(f"CIFAR-10 split 0: {n} train, {len(validation[1])} validation, {len(test[1])} test; "
          f"LeNet-5, Adam 0.0024, batch 32, {args.epochs} epochs, {args.threads} thread(s), "
          f"{args.rounds} round(s)", flush=True)

    runs = {"plain fit (anchor)": [], "train_regime": []}
    if args.before:
        runs["train_regime (before)"] = []
    for round_ in range(args.rounds):
        order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for name in order:
            if name.startswith("train_regime"):
                run = advfit_train(train, validation, test, args.epochs, args.seed,
                                   before=name.endswith("(before)"))
            else:
                run = plain_fit(train, validation, args.epochs, args.seed)
            runs[name].append(run)
            print(f"  round {round_ + 1}: {name}: {run['total']:.1f} s wall, {run['cpu']:.1f} s "
                  f"CPU; epochs {' '.join(f'{s:.1f}' for s in run['epochs'])} s", flush=True)

    histories = [run.pop("history").to_numpy(dtype="float64") for name, group in runs.items()
                 if name.startswith("train_regime") for run in group]
    import numpy as np

    identical = all(np.array_equal(h, histories[0], equal_nan=True) for h in histories)
    print(f"  every train_regime run{' (before and after)' if args.before else ''} gave the same "
          f"history, bit for bit: {identical}", flush=True)
    info["histories_bit_identical"] = str(identical)

    anchor_runs = runs["plain fit (anchor)"]
    anchor = {"runs": len(anchor_runs), "wall": sum(r["total"] for r in anchor_runs),
              "cpu": sum(r["cpu"] for r in anchor_runs),
              "per_epoch": [sum(r["epochs"][i] for r in anchor_runs) / len(anchor_runs)
                            for i in range(args.epochs)]}
    if args.epochs > 1:
        anchor["steady"] = (sum(sum(r["epochs"][1:]) for r in anchor_runs)
                            / (len(anchor_runs) * (args.epochs - 1)))
    rows = [summarise(name, group, anchor, n, args.epochs) for name, group in runs.items()]
    print(f"\nthroughput, training images per second ({n} per epoch; validation and test "
          f"scoring counted as cost):")
    for row in rows:
        print(f"  {row['variant']:<30} {row['images_per_s']:8.1f} img/s  = {row['ratio_wall']:.3f}"
              f" x anchor by wall time, {row['ratio_cpu']:.3f} x by CPU time (steady epochs "
              f"{row.get('steady_ratio_wall', float('nan')):.3f} x; per epoch "
              f"{row['ratio_per_epoch']})", flush=True)
        if "test_s" in row:
            print(f"  {'':<30} parts: training+validation {row['fit_s']} s, test scoring "
                  f"{row['test_s']} s, snapshot+state {row['save_s']} s; without the test "
                  f"scoring {row['ratio_wall_without_test']:.3f} x anchor; the test scoring "
                  f"is {row['test_share_of_gap']:.0%} of the gap", flush=True)
    print("  target: train_regime >= 0.8 x anchor")
    finish("training", rows, info, account, args.threads)


if __name__ == "__main__":
    main()
