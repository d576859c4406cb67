"""Benchmark 5: cost per point of each robustness metric in advfit.metrics.

Trains the same fixed
LeNet-5 as benchmarks/attacks.py (digits, seeded) and times every metric of
``advfit.metrics.METRICS`` (CLEVER, loss sensitivity, empirical robustness,
and whatever else is registered then) on correctly classified test points,
at advfit's defaults and, where they differ, at the papers' values
(``METRIC_PARAMS[...].paper``; CLEVER's paper batch of 1024 gradients per
maximum runs on fewer points). Each metric is called once on one point (the
fixed cost of a call) and once on ``n`` points; the cost per point is the
second time divided by ``n``.

    python benchmarks/metrics.py [--threads 1] [--n 100] [--wait-quiet 600]

Writes benchmarks/out/metrics.csv.
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


def main() -> None:
    parser = micro_parser(__doc__)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()

    info, account = begin(args)
    import numpy as np

    from advfit.metrics import METRIC_PARAMS, METRICS, run_metric

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
