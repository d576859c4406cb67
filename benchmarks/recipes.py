"""Benchmark 12: what Rice et al.'s recipe costs here (configs/rice2020_cifar10.yaml).

Trains PreActResNet18 (11.2 M parameters, Rice et al.'s network, per-channel
normalization inside the model) on ``--n-train`` CIFAR-10 images, batch 128,
three ways, each measured in this run:

- plain ``model.fit`` of the same model and data, SGD momentum 0.9 (the anchor);
- advfit's ``train_regime`` with the full standard recipe (piecewise schedule,
  coupled weight decay on all weights, reflect crop + flip), as a
  ``train_model`` job runs it (snapshot, state, validation and test scored);
- the same with PGD-10 adversarial training (8/255, step 2/255, crafted in
  training mode, as Rice et al.).

Each advfit variant runs once for 1 epoch and once for 1 + ``--epochs``; the
difference is the steady cost of an epoch without the one-off tracing. Images
per second are training images per second. The extrapolation multiplies by
Rice et al.'s work: 200 epochs of 49000 training images, plus PGD-10 on the
1000 validation images and on the 10000 test images every epoch (robust
validation accuracy and the white-box view), an attacked image costing about
what an image of PGD-10 training costs (11 forward-backward passes).

    python benchmarks/recipes.py [--threads 2] [--n-train 256] [--epochs 1]
                                 [--cifar ../shared/data/cifar-10-batches-py]

Without ``--cifar`` (or when the folder is missing) the images are uniform
noise: the speed of a convolutional network does not depend on pixel values.
Writes benchmarks/out/recipes.csv.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import begin, finish, micro_parser  # noqa: E402

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

NORMALIZATION = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}
RECIPE = {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "batch_size": 128,
          "weight_decay": 0.0005, "weight_decay_scope": "all",
          "lr_schedule": {"type": "piecewise", "unit": "fraction", "boundaries": [0.5, 0.75],
                          "factors": [0.1, 0.01]},
          "augmentation": {"crop": {"padding": 4, "padding_mode": "reflect"},
                           "flip": "horizontal"}}
PGD10 = {"attack": "pgd", "eps": 8 / 255, "eps_iter": 2 / 255, "nb_iter": 10,
         "crafting_mode": "training"}
# Rice et al.'s run: 200 epochs; 49000 trained on, 1000 validation, 10000 test
RICE = {"epochs": 200, "train": 49000, "validation": 1000, "test": 10000}


def _images(folder: str | None, n: int, seed: int):
    path = Path(folder) / "data_batch_1" if folder else None
    if path is not None and path.is_file():
        from advfit.data.formats import read_cifar_batch  # the restricted unpickler

        x, y = read_cifar_batch(path)
        return (x[:n].astype("float32") / 255.0, y[:n].astype("int64")), "CIFAR-10"
    rng = np.random.default_rng(seed)
    return (rng.random((n, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, n)), "noise"


def _model(seed: int):
    import keras

    from advfit.models.architectures import build_model

    keras.utils.set_random_seed(seed)
    return build_model({"name": "preact_resnet18", "normalization": NORMALIZATION},
                       (32, 32, 3), 10)


def _fit_seconds(data, epochs: int, seed: int) -> float:
    import keras

    model = _model(seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x, y = data
    start = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=epochs, shuffle=True, verbose=0)
    return time.perf_counter() - start


def _train_seconds(data, regime: dict, seed: int) -> float:
    from advfit.models.training import train_regime

    held_out = (data[0][:64], data[1][:64])  # validation and test: small, as a fixed cost
    with tempfile.TemporaryDirectory(prefix="advfit-bench-recipes-") as folder:
        model = _model(seed)
        start = time.perf_counter()
        train_regime(model, regime, data, held_out, held_out, Path(folder), seed=seed)
        return time.perf_counter() - start


def _steady(measure, epochs: int) -> float:
    """Seconds of one epoch once traced: (1 + epochs) - 1 epoch runs."""
    return (measure(1 + epochs) - measure(1)) / epochs


def main() -> None:
    parser = micro_parser(__doc__)
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cifar", default=str(_HERE.parent.parent / "shared/data/"
                                               "cifar-10-batches-py"))
    args = parser.parse_args()

    info, account = begin(args)
    from advfit import runtime

    runtime.configure(args.threads, seed=args.seed)
    data, source = _images(args.cifar, args.n_train, args.seed)
    variants = {
        "model.fit (anchor)": lambda e: _fit_seconds(data, e, args.seed),
        "advfit standard recipe": lambda e: _train_seconds(data, {**RECIPE, "epochs": e},
                                                           args.seed),
        "advfit PGD-10 AT recipe": lambda e: _train_seconds(
            data, {**RECIPE, "epochs": e, "adversarial_training": PGD10}, args.seed),
    }
    rows = []
    for name, measure in variants.items():
        epoch_s = _steady(measure, args.epochs)
        rows.append({"variant": name, "epoch_s": round(epoch_s, 3),
                     "images_per_s": round(args.n_train / epoch_s, 2)})
    anchor = rows[0]["epoch_s"]
    for row in rows:
        row["ratio_to_fit"] = round(row["epoch_s"] / anchor, 2)
    at_rate = rows[2]["images_per_s"]
    attacked = RICE["epochs"] * (RICE["validation"] + RICE["test"])
    hours = {"standard": RICE["epochs"] * RICE["train"] / rows[1]["images_per_s"] / 3600,
             "pgd_at": (RICE["epochs"] * RICE["train"] + attacked) / at_rate / 3600}
    for row in rows:
        row["rice2020_hours"] = round(hours["standard"] if "standard" in row["variant"]
                                      else hours["pgd_at"] if "PGD" in row["variant"]
                                      else float("nan"), 1)
    print(f"\nPreActResNet18, {args.n_train} {source} images, batch 128, "
          f"{args.threads} thread(s):")
    for row in rows:
        print(f"  {row['variant']:<26} {row['epoch_s']:8.2f} s/epoch  "
              f"{row['images_per_s']:8.2f} images/s  = {row['ratio_to_fit']:5.2f} x model.fit")
    print(f"configs/rice2020_cifar10.yaml here: standard {hours['standard']:.0f} h, "
          f"PGD-10 AT {hours['pgd_at']:.0f} h (= {hours['pgd_at'] / 24:.0f} days), "
          "white-box and validation PGD-10 every epoch included")
    finish("recipes", rows, info, account, args.threads)


if __name__ == "__main__":
    main()
