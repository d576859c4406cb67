"""Benchmark 5: cost per point of each robustness metric in advfit.evaluation.metrics.

Trains the same fixed
LeNet-5 as benchmarks/attacks.py (digits, seeded) and times every metric of
``advfit.evaluation.metrics.METRICS`` (CLEVER, loss sensitivity, empirical robustness,
and whatever else is registered then) on correctly classified test points,
at advfit's defaults and, where they differ, at the papers' values
(``METRIC_PARAMS[...].paper``; CLEVER's paper batch of 1024 gradients per
maximum runs on fewer points). Each metric is called once on one point (the
fixed cost of a call) and once on ``n`` points; the cost per point is the
second time divided by ``n``.

    python benchmarks/metrics.py [--threads 1] [--n 100] [--wait-quiet 600]
    python benchmarks/metrics.py --clever [--clever-points 20] [--cifar ../shared/data/...]

Writes benchmarks/out/metrics.csv. With ``--clever``: CLEVER only, advfit's
estimator (backend advfit) against ART's clever_u (backend art) on the same
points in the same run, at paper 002's settings (nb_batches 500, batch_size
10, radius 5, L2, and L-inf), on the digits LeNet and on a LeNet trained
briefly on a real CIFAR-10 slice: throughput ratio (target >= 10) and the
median relative difference of the scores (target <= 5 %); writes
benchmarks/out/clever.csv.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import begin, finish, lenet_and_pool, micro_parser  # noqa: E402

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

# Points per call where n would take minutes.
N_CAP = {"clever_u": 20}
N_CAP_PAPER = {"clever_u": 3}


def settings(name: str, spec: dict) -> list[tuple[str, dict]]:
    """advfit's defaults, plus the papers' values where they differ."""
    out = [("advfit defaults", {})]
    paper = {k: p.paper for k, p in spec.items()
             if getattr(p, "paper", None) is not None and p.paper != p.default}
    if paper:
        out.append(("paper values " + json.dumps(paper), paper))
    return out


CLEVER_PAPER = {"nb_batches": 500, "batch_size": 10, "radius": 5.0}  # paper 002's settings


def cifar_lenet(folder: str, seed: int, n_train: int = 5000, n_test: int = 1000):
    """A LeNet-5 trained 3 epochs on a stratified slice of the real CIFAR-10."""
    import keras
    import numpy as np

    from advfit.data.datasets import PooledData, read_dataset
    from advfit.models.architectures import build_model

    keras.utils.set_random_seed(seed)
    data = PooledData(read_dataset({"name": "cifar10",
                                    "subset": {"train": n_train, "test": n_test}}, folder))
    model = build_model("lenet5", data.image_shape, data.n_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_train, y_train = data.take(data.official_train)
    model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
    x_test, y_test = data.take(data.official_test)
    correct = np.flatnonzero(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test)
    return model, x_test[correct]


def clever_compare(args, info, account) -> None:
    """advfit's CLEVER against ART's, same points, same run."""
    import numpy as np

    from advfit.evaluation.clever import _margin_norms_fn, dual_order
    from advfit.evaluation.metrics import _norm, clever_u

    model, x_test, _, pool = lenet_and_pool(args.clever_points, args.seed)
    cases = [("digits lenet5", model, x_test[pool])]
    if Path(args.cifar).is_dir():
        cifar_model, cifar_x = cifar_lenet(args.cifar, args.seed)
        cases.append(("cifar10 lenet5 (5k-image slice, 3 epochs)", cifar_model,
                      cifar_x[:args.clever_points]))
    else:
        print(f"  no CIFAR-10 at {args.cifar}: digits only")
    rows = []
    for label, net, x in cases:
        for norm in (2, "inf"):
            params = {**CLEVER_PAPER, "norm": norm}
            # Steady state, as in a metric job (35 snapshots share one model's traces):
            # advfit's traced calls for these shapes, ART's traced class gradients.
            clever_u(net, x, backend="advfit", seed=args.seed, **params)
            clever_u(net, x[:1], backend="art", seed=args.seed, **params)
            times, scores = {}, {}
            for backend in ("art", "advfit"):
                start = time.perf_counter()
                scores[backend] = clever_u(net, x, backend=backend, seed=args.seed, **params)
                times[backend] = time.perf_counter() - start
            rel = np.abs(scores["advfit"] - scores["art"]) / np.abs(scores["art"])
            # which backward pass advfit ran: the layer chain's own, or autodiff
            path = _margin_norms_fn(net, int(net.output_shape[-1]), dual_order(_norm(norm))).path
            row = {"case": label, "norm": norm, "n": len(x), **params, "gradients": path,
                   "art_s_per_point": round(times["art"] / len(x), 4),
                   "advfit_s_per_point": round(times["advfit"] / len(x), 4),
                   "speedup": round(times["art"] / times["advfit"], 2),
                   "median_rel_diff": round(float(np.nanmedian(rel)), 4),
                   "p90_rel_diff": round(float(np.nanpercentile(rel, 90)), 4),
                   "mean_art": round(float(np.nanmean(scores["art"])), 5),
                   "mean_advfit": round(float(np.nanmean(scores["advfit"])), 5),
                   "n_nan": int(np.isnan(scores["advfit"]).sum() + np.isnan(scores["art"]).sum())}
            rows.append(row)
            print(f"  {label:<44} L{norm:<3} n={len(x)}  ART {row['art_s_per_point']:.3f} s/point"
                  f"  advfit {row['advfit_s_per_point']:.3f} s/point  speedup "
                  f"{row['speedup']:.1f}x (target >= 10)  median |rel diff| "
                  f"{row['median_rel_diff']:.3f} (target <= 0.05), p90 {row['p90_rel_diff']:.3f};"
                  f"  gradients: {path};"
                  f"  means {row['mean_art']} / {row['mean_advfit']}", flush=True)
    finish("clever", rows, info, account, args.threads)


def main() -> None:
    parser = micro_parser(__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--clever", action="store_true", help="CLEVER: advfit against ART only")
    parser.add_argument("--clever-points", type=int, default=20)
    parser.add_argument("--cifar", default=str(Path(__file__).resolve().parents[2] / "shared"
                                               / "data" / "cifar-10-batches-py"))
    args = parser.parse_args()
    if args.clever:
        info, account = begin(args)
        clever_compare(args, info, account)
        return

    info, account = begin(args)
    import numpy as np

    from advfit.evaluation.metrics import METRIC_PARAMS, METRICS, run_metric

    model, x_test, y_test, pool = lenet_and_pool(args.n, args.seed)
    print(f"metrics: {', '.join(METRICS)}; {args.threads} TensorFlow thread(s)", flush=True)
    rows = []
    for name in METRICS:
        for label, params in settings(name, METRIC_PARAMS[name]):
            cap = (N_CAP_PAPER if label != "advfit defaults" else N_CAP).get(name, len(pool))
            n = min(len(pool), cap)
            x, y = x_test[pool[:n]], y_test[pool[:n]]
            try:
                def call(xs, ys):
                    return run_metric(name, model, xs, ys, params, seed=args.seed)

                start = time.perf_counter()
                call(x[:1], y[:1])
                t_one = time.perf_counter() - start
                start = time.perf_counter()
                values = np.asarray(call(x, y), dtype=np.float64)
                t_n = time.perf_counter() - start
            except Exception as error:  # noqa: BLE001 - report and go on
                print(f"  {name:<22} {label:<40} FAILED: {type(error).__name__}: {error}")
                rows.append({"metric": name, "setting": label, "skipped": f"failed: {error}"})
                continue
            finite = values[np.isfinite(values)]
            row = {"metric": name, "setting": label, "params": json.dumps(params), "n": n,
                   "t_one_point_s": round(t_one, 3), "t_n_points_s": round(t_n, 3),
                   "s_per_point": round(t_n / n, 4), "points_per_s": round(n / t_n, 2),
                   "mean_value": round(float(finite.mean()), 5) if len(finite) else None,
                   "n_finite": len(finite)}
            rows.append(row)
            print(f"  {name:<22} {label:<60} n={n:3d}  {row['s_per_point'] * 1000:9.1f} ms/point "
                  f"({row['points_per_s']:.1f} points/s; one-point call {t_one:.2f} s)  "
                  f"mean {row['mean_value']}", flush=True)
    finish("metrics", rows, info, account, args.threads)

if __name__ == "__main__":
    main()
