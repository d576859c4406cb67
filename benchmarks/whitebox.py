"""Benchmark 8: cost of the white-box view, per snapshot and attack.

One white-box chunk (advfit.evaluation.trajectory.attack_snapshot: a snapshot loaded,
its clean predictions, the attack on the points it gets right, the robust
predictions, the distances) is timed for each attack on ``n`` test points, on
digits (the fixed LeNet-5 of benchmarks/attacks.py) and on a real CIFAR-10
slice (LeNet-5 trained 3 epochs on 2000 images of ../shared/data, skipped when
absent). Anchors measured in the same run: the bare attack call on the same
points (``run_attack``), and scoring the snapshot on the whole test set.

    python benchmarks/whitebox.py [--threads 1] [--n 100] [--repeat 3]

Writes benchmarks/out/whitebox.csv.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import begin, finish, micro_parser, trained_lenet  # noqa: E402

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

CIFAR = _HERE.parent.parent / "shared" / "data" / "cifar-10-batches-py"
ATTACKS = {
    "fgsm": {"eps": 0.1},
    "pgd-10": {"eps": 0.1, "eps_iter": 0.025, "nb_iter": 10, "rand_init": True},
    "pgd-20": {"eps": 0.1, "eps_iter": 0.01, "nb_iter": 20, "rand_init": True},
    "deepfool": {"max_iter": 50},
}


def cifar_lenet(seed: int):
    import keras
    import numpy as np

    from advfit.data.datasets import read_dataset, take_subset
    from advfit.models.architectures import build_model
    from advfit.data.sources import resolve_local
    from advfit.models.training import compile_model

    copy = resolve_local("cifar10", CIFAR, verify=False)
    arrays = take_subset(read_dataset({"name": "cifar10"}, str(copy.folder)),
                         {"train": 2000, "test": 400})
    keras.utils.set_random_seed(seed)
    model = build_model("lenet5", arrays["x_train"].shape[1:], 10)
    compile_model(model, {"optimizer": "adam", "learning_rate": 3e-3})
    model.fit(arrays["x_train"], arrays["y_train"], epochs=3, batch_size=32, verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict(arrays["x_test"], verbose=0), 1)
                             == arrays["y_test"]))
    print(f"trained LeNet-5 on a CIFAR-10 slice (2000 images, 3 epochs): test accuracy "
          f"{accuracy:.3f}", flush=True)
    return model, arrays["x_test"], arrays["y_test"]


def measure(dataset: str, model, x_test, y_test, n: int, repeat: int) -> list[dict]:
    import keras
    import numpy as np

    from advfit.attacks import run_attack
    from advfit.attacks.batching import predict_logits, traced_forward
    from advfit.evaluation.trajectory import attack_snapshot

    snapshot = Path(tempfile.mkdtemp()) / "snapshot.weights.h5"
    model.save_weights(snapshot)
    x, y = x_test[:n], y_test[:n]
    forward = traced_forward(model)
    start = time.perf_counter()
    for _ in range(repeat):
        model.load_weights(snapshot)
        predict_logits(forward, x_test, 1024)
    t_score = (time.perf_counter() - start) / repeat
    rows = []
    for name, params in ATTACKS.items():
        method = name.split("-")[0]
        chunk, bare = [], []
        for i in range(repeat):
            keras.utils.set_random_seed(i)
            start = time.perf_counter()
            model.load_weights(snapshot)
            result = attack_snapshot(model, x, y, lambda a, b: run_attack(method, model, a, b,
                                                                          params), 1024, "pixels")
            chunk.append(time.perf_counter() - start)
            right = result["clean"]
            start = time.perf_counter()
            run_attack(method, model, x[right], y[right], params)
            bare.append(time.perf_counter() - start)
        t_chunk, t_bare = float(np.median(chunk)), float(np.median(bare))
        row = {"dataset": dataset, "attack": name, "n_points": n,
               "s_per_snapshot": round(t_chunk, 3),
               "ms_per_point": round(1000 * t_chunk / n, 2),
               "chunk_over_bare_attack": round(t_chunk / t_bare, 2),
               "chunk_over_scoring_test_set": round(t_chunk / t_score, 1),
               "clean_accuracy": round(float(result["clean"].mean()), 3),
               "robust_accuracy": round(float(result["robust"].mean()), 3)}
        rows.append(row)
        print(f"  {dataset:<8} {name:<9} n={n}: {t_chunk:6.2f} s per snapshot "
              f"({row['ms_per_point']:.1f} ms/point; {row['chunk_over_bare_attack']}x the bare "
              f"attack, {row['chunk_over_scoring_test_set']}x scoring the {len(y_test)}-image "
              f"test set); clean {row['clean_accuracy']}, robust {row['robust_accuracy']}",
              flush=True)
    return rows


def main() -> None:
    parser = micro_parser(__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    info, account = begin(args)
    rows = measure("digits", *trained_lenet(args.seed), args.n, args.repeat)
    if CIFAR.is_dir():
        rows += measure("cifar10", *cifar_lenet(args.seed), args.n, args.repeat)
    else:
        print(f"no CIFAR-10 copy at {CIFAR}: the CIFAR-10 slice is skipped")
    finish("whitebox", rows, info, account, args.threads)


if __name__ == "__main__":
    main()
