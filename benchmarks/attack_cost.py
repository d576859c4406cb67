"""Cost of every attack (seconds per 100 AEs) and metric (seconds per point).

Trains the test suite's LeNet-5 (digits, 3 epochs, seed 0), then runs each
attack of ``advfit.attacks.ATTACKS`` on ``--n`` correctly classified test
images at its defaults (required parameters: the papers' values below) and
each metric of ``advfit.metrics.METRICS`` at its defaults. Every call is
preceded by a 4-image call, so the figures are steady-state (tracing
excluded). Prints one line per attack and metric.

    python benchmarks/attack_cost.py [--threads 1] [--n 100] [--clever-points 20] [--paper-hsj]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

REQUIRED = {  # papers: FGSM eps 0.1 (000) / 0.3 (002); PGD eps 0.3 (002)
    "fgsm": {"eps": 0.1}, "fgsm_art": {"eps": 0.1},
    "pgd": {"eps": 0.3, "eps_iter": 0.01, "nb_iter": 40},
    "pgd_art": {"eps": 0.3, "eps_iter": 0.01, "nb_iter": 40},
    "bim": {"eps": 0.3, "eps_iter": 0.01, "nb_iter": 40},
}
ART_HSJ = {"max_iter": 50, "max_eval": 10000, "init_eval": 100, "init_size": 100}


def trained_lenet(threads: int):
    from advfit import runtime

    runtime.configure(threads, seed=0)
    from advfit.datasets import PooledData, load_dataset
    from advfit.models import build_model
    from advfit.training import train_regime

    digits = PooledData(load_dataset("digits"))
    model = build_model("lenet5", digits.x.shape[1:], 10)
    regime = {"optimizer": "adam", "learning_rate": 3e-3, "batch_size": 32, "epochs": 3}
    with tempfile.TemporaryDirectory() as snapshots:
        train_regime(model, regime, digits.take(digits.official_train[:1000]),
                     digits.take(digits.official_train[1000:]),
                     digits.take(digits.official_test), snapshots)
    return model, digits.take(digits.official_test)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (jobs use 1)")
    parser.add_argument("--n", type=int, default=100, help="images per attack, points per metric")
    parser.add_argument("--clever-points", type=int, default=20)
    parser.add_argument("--paper-hsj", action="store_true",
                        help="also HopSkipJump at ART's defaults, on n/10 images")
    args = parser.parse_args()

    model, (x_test, y_test) = trained_lenet(args.threads)
    from advfit import attacks, metrics
    from advfit.adversarial import predict_labels

    correct = np.flatnonzero(predict_labels(model, x_test) == y_test)[:args.n]
    x, y = x_test[correct], y_test[correct]
    print(f"load average {os.getloadavg()[0]:.1f}; {args.threads} TF thread(s); "
          f"{len(x)} correctly classified test images")
    runs = [(name, {**REQUIRED.get(name, {})}, len(x)) for name in attacks.ATTACKS]
    if args.paper_hsj:
        runs.append(("hopskipjump", ART_HSJ, max(1, len(x) // 10)))
    print(f"{'attack':<12} {'params':<58} {'s/100 AEs':>9} {'success':>8} {'mean L2':>8}")
    for name, params, n in runs:
        attacks.run_attack(name, model, x[:4], y[:4], params)  # trace and warm up
        x_adv, seconds = timed(attacks.run_attack, name, model, x[:n], y[:n], params)
        fooled = predict_labels(model, x_adv) != y[:n]
        distance = np.linalg.norm((x_adv - x[:n]).reshape(n, -1), axis=1)
        shown = ", ".join(f"{k}={v}" for k, v in attacks.resolve_params(name, params).items())
        print(f"{name:<12} {shown[:58]:<58} {100 * seconds / n:9.2f} {fooled.mean():8.2f} "
              f"{distance[fooled].mean() if fooled.any() else np.nan:8.3f}")

    print(f"\n{'metric':<22} {'points':>6} {'s/point':>8} {'mean':>8}")
    for name in metrics.METRICS:
        n = min(args.clever_points, len(x)) if name == "clever_u" else len(x)
        metrics.run_metric(name, model, x[:2], y[:2], {})  # trace and warm up
        values, seconds = timed(metrics.run_metric, name, model, x[:n], y[:n], {})
        print(f"{name:<22} {n:6d} {seconds / n:8.4f} {metrics.summary(values)['mean']:8.4f}")


if __name__ == "__main__":
    main()
