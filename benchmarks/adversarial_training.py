"""Benchmark 6: the cost of PGD adversarial training against normal training.

Trains LeNet-5 on digits' official training part (1437 images, Adam, batch
64) with ``advfit.models.training.train_regime``, as a ``train_model`` job does
(snapshot and state after every epoch, validation and test scored), for the
normal regime (``model.fit``, the anchor) and for a few ``adversarial_training``
specs (the traced PGD step). Each variant runs once for 1 epoch and once for
1 + ``--epochs`` epochs; the difference over ``--epochs`` is the steady cost
of one epoch, without the one-off tracing. Ratios are against the normal
regime measured in the same run. PGD with ``nb_iter`` k and ``fraction`` f
costs about 1 + f (k + 1) forward-backward passes per image instead of 1.

    python benchmarks/adversarial_training.py [--threads 1] [--epochs 4]
                                              [--wait-quiet 600]

Writes benchmarks/out/adversarial_training.csv.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import begin, finish, micro_parser  # noqa: E402

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

REGIME = {"optimizer": "adam", "learning_rate": 0.003, "batch_size": 64}
VARIANTS = {
    "normal (model.fit)": None,
    "pgd-7, fraction 1 (digits)": {"attack": "pgd", "eps": 0.15, "eps_iter": 0.0375,
                                   "nb_iter": 7},
    "pgd-7, fraction 0.5": {"attack": "pgd", "eps": 0.15, "eps_iter": 0.0375, "nb_iter": 7,
                            "fraction": 0.5},
    "pgd-10, fraction 1 (Rice et al.)": {"attack": "pgd", "eps": 8 / 255, "eps_iter": 2 / 255,
                                         "nb_iter": 10},
}


def _train_seconds(data, regime: dict, seed: int) -> float:
    import keras

    from advfit.models.architectures import build_model
    from advfit.models.training import train_regime

    train = data.take(data.official_train)
    test = data.take(data.official_test)
    keras.utils.set_random_seed(seed)
    model = build_model("lenet5", data.x.shape[1:], data.n_classes)
    with tempfile.TemporaryDirectory(prefix="advfit-bench-at-") as folder:
        start = time.perf_counter()
        train_regime(model, regime, train, test, test, Path(folder), seed=seed)
        return time.perf_counter() - start


def main() -> None:
    parser = micro_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    info, account = begin(args)
    from advfit import runtime
    from advfit.data.datasets import PooledData, load_dataset

    runtime.configure(args.threads, seed=args.seed)
    data = PooledData(load_dataset("digits"))
    rows = []
    for name, spec in VARIANTS.items():
        regime = {**REGIME, **({"adversarial_training": spec} if spec else {})}
        first = _train_seconds(data, {**regime, "epochs": 1}, args.seed)
        longer = _train_seconds(data, {**regime, "epochs": 1 + args.epochs}, args.seed)
        per_epoch = (longer - first) / args.epochs
        rows.append({"variant": name, "first_epoch_s": round(first, 3),
                     "epoch_s": round(per_epoch, 3)})
    anchor = rows[0]["epoch_s"]
    print(f"\nLeNet-5, digits (1437 training images), batch 64, {args.threads} thread(s):")
    for row in rows:
        row["ratio_to_normal"] = round(row["epoch_s"] / anchor, 2)
        print(f"  {row['variant']:<36} first epoch {row['first_epoch_s']:6.2f} s   "
              f"then {row['epoch_s']:6.3f} s/epoch = {row['ratio_to_normal']:5.2f} x normal")
    finish("adversarial_training", rows, info, account, args.threads)


if __name__ == "__main__":
    main()
