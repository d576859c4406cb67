"""Benchmark 4: snapshot evaluation throughput (samples x snapshots per second).

Trains LeNet-5 on digits for 20 epochs (seeded) with a snapshot after every
epoch, as the workflow does, then scores every snapshot on one array shaped
like an ``evaluate_snapshots`` job's (the 1797 digits plus 400 perturbed
copies standing in for two adversarial sets: 2197 samples; ``--scale`` repeats
it) with:

- ``correctness_by_epoch``: advfit.evaluation.snapshots's function, what the job runs;
- ``load_weights + predict``: the plain loop over the same snapshot files;
- ``predict``: ``model.predict`` alone (weights set from memory, untimed),
  the throughput the target is measured against;
- ``traced call``: a ``tf.function`` of ``model(x, training=False)`` over the
  same batches, for reference (what ``predict`` costs beyond the model).

Same snapshots, same arrays, same batch size (1024, the config's); each
variant runs ``--repeat`` times after one warm-up, median reported.

    python benchmarks/evaluation.py [--threads 1] [--scale 1,10] [--repeat 3]
                                    [--wait-quiet 600]

Writes benchmarks/out/evaluation.csv.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import begin, finish, micro_parser  # noqa: E402

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

TARGET = 0.8


def make_snapshots(folder: Path, epochs: int, seed: int):
    import keras
    import numpy as np

    from advfit.data.datasets import PooledData, load_digits
    from advfit.models.architectures import build_model
    from advfit.runtime.layout import snapshot_name
    from advfit.models.training import compile_model

    data = PooledData(load_digits())
    keras.utils.set_random_seed(seed)
    model = build_model("lenet5", data.x.shape[1:], data.n_classes)
    compile_model(model, {"optimizer": "sgd", "learning_rate": 0.01})
    snapshots = {}
    for epoch in range(1, epochs + 1):
        model.fit(data.x[: data.n_train], data.y[: data.n_train], epochs=1, batch_size=32,
                  verbose=0)
        snapshots[epoch] = folder / snapshot_name(epoch)
        model.save_weights(snapshots[epoch])
    rng = np.random.default_rng(seed)
    noisy = np.clip(data.x[:400] + rng.uniform(-0.1, 0.1, data.x[:400].shape), 0, 1)
    x = np.concatenate([data.x, noisy.astype(np.float32)])
    y = np.concatenate([data.y, data.y[:400]])
    return snapshots, x, y


def main() -> None:
    parser = micro_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--scale", default="1,10", help="copies of the 2197-sample array")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    info, account = begin(args)
    import numpy as np
    import tensorflow as tf

    from advfit.evaluation.snapshots import correctness_by_epoch
    from advfit.models.architectures import build_model

    folder = Path(tempfile.mkdtemp(prefix="advfit-bench-eval-"))
    snapshots, x1, y1 = make_snapshots(folder, args.epochs, args.seed)
    model = build_model("lenet5", x1.shape[1:], 10)
    weights = {}
    for epoch, path in snapshots.items():
        model.load_weights(path)
        weights[epoch] = model.get_weights()
    bs = args.batch_size
    forward = tf.function(lambda xb: model(xb, training=False), reduce_retracing=True)

    def variant_correctness(x, y):
        return correctness_by_epoch(model, snapshots, x, y, bs)

    def variant_load_predict(x, y):
        out = {}
        for epoch in sorted(snapshots):
            model.load_weights(snapshots[epoch])
            out[epoch] = np.argmax(model.predict(x, batch_size=bs, verbose=0), axis=1) == y
        return out

    def variant_predict_only(x, y):
        total, out = 0.0, {}
        for epoch in sorted(snapshots):
            model.set_weights(weights[epoch])
            start = time.perf_counter()
            out[epoch] = np.argmax(model.predict(x, batch_size=bs, verbose=0), axis=1) == y
            total += time.perf_counter() - start
        return out, total

    def variant_traced(x, y):
        total, out = 0.0, {}
        for epoch in sorted(snapshots):
            model.set_weights(weights[epoch])
            start = time.perf_counter()
            logits = np.concatenate([forward(x[i:i + bs]).numpy() for i in range(0, len(x), bs)])
            out[epoch] = np.argmax(logits, axis=1) == y
            total += time.perf_counter() - start
        return out, total

    variants = {"correctness_by_epoch": variant_correctness,
                "load_weights + predict": variant_load_predict,
                "predict (weights preset, untimed)": variant_predict_only,
                "traced call (weights preset, untimed)": variant_traced}
    rows = []
    for scale in (int(s) for s in args.scale.split(",")):
        x = np.concatenate([x1] * scale)
        y = np.concatenate([y1] * scale)
        work = len(x) * len(snapshots)
        print(f"\n{len(x)} samples x {len(snapshots)} snapshots, batch {bs}, "
              f"{args.threads} thread(s):")
        reference = None
        results = {}
        for name, fn in variants.items():
            fn(x, y)  # warm-up: traces predict/forward for these shapes
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                out = fn(x, y)
                elapsed = time.perf_counter() - start
                if isinstance(out, tuple):
                    out, elapsed = out
                times.append(elapsed)
            seconds = statistics.median(times)
            results[name] = out
            if reference is None:
                reference = out
            same = all(np.array_equal(reference[e], out[e]) for e in reference)
            rows.append({"samples": len(x), "snapshots": len(snapshots), "batch_size": bs,
                         "variant": name, "seconds_median": round(seconds, 4),
                         "seconds_min": round(min(times), 4),
                         "sample_snapshots_per_s": round(work / seconds, 1),
                         "same_predictions": same})
        by = {r["variant"]: r for r in rows if r["samples"] == len(x)}
        predict = by["predict (weights preset, untimed)"]["sample_snapshots_per_s"]
        for name in variants:
            r = by[name]
            r["ratio_to_predict"] = round(r["sample_snapshots_per_s"] / predict, 3)
            print(f"  {name:<40} {r['seconds_median']:7.3f} s  {r['sample_snapshots_per_s']:10.0f} "
                  f"sample-snapshots/s  = {r['ratio_to_predict']:.2f} x predict"
                  f"{'' if r['same_predictions'] else '  (PREDICTIONS DIFFER)'}")
        ratio = by["correctness_by_epoch"]["ratio_to_predict"]
        print(f"  correctness_by_epoch / predict = {ratio:.2f}  "
              f"[target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'}]")
    finish("evaluation", rows, info, account, args.threads)

if __name__ == "__main__":
    main()
