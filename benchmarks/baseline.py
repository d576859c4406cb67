"""Benchmark 2: the hand-written baseline, what a researcher writes without a workflow.

ONE Python process does the work of the default config, in sequence, with the
same libraries and the advfit functions a researcher would call:

- load the dataset, make the splits;
- per split x regime: build LeNet-5, train it with the snapshot callback
  (weights saved after every epoch, test set scored), pick the best snapshot,
  craft every attack's adversarial set on it, reload and evaluate every
  snapshot on every set;
- experiment KNN (the default config has a ``knn:`` section): per split, the
  K-NN on the split's training samples, its test predictions, every attack's
  K-NN adversarial set crafted on the CNN's best snapshot, K-NN accuracy on
  every set;
- the tables and figures the workflow's final targets hold.

It keeps the workflow's per-job seeds (``advfit.runtime.seeds.job_seed``) and
deterministic TensorFlow, so its accuracy table can be checked against the
workflow's (benchmarks/compare.py does). TensorFlow gets every core
(``--threads``, default nproc): the thread pools a researcher gets without
setting anything. Only what a researcher needs is written: the snapshots, the
tables, the figures (no intermediate .npz files).

    python benchmarks/baseline.py [--configfile config.yaml] [--threads N]
                                  [--outdir DIR] [--wait-quiet 600]

Prints the time per phase and writes benchmarks/out/baseline.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

T_PROCESS = time.perf_counter()
_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import (REPO, CpuAccount, machine, print_machine, wait_for_quiet,  # noqa: E402
                    write_csv)

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]  # no shadowing of libraries

PHASES: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)


@contextlib.contextmanager
def phase(name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        PHASES[name] += time.perf_counter() - start
        COUNTS[name] += 1


def run(configfile: Path, threads: int, outdir: Path) -> None:
    with phase("import TensorFlow + advfit"):
        from advfit import runtime

        runtime.configure(threads)
        import keras
        import pandas as pd

        from advfit.attacks.adversarial_sets import craft_adversarial_set
        from advfit.attacks import AttackSpec
        from advfit.statistics.aggregate import collect_accuracy, summarise_accuracy, summarise_distances
        from advfit.config import load_config
        from advfit.data.datasets import PooledData, read_dataset
        from advfit.evaluation.distances import perturbation_norms
        from advfit.evaluation.snapshots import evaluate_split
        from advfit.models.architectures import build_model
        from advfit.runtime.seeds import job_seed
        from advfit.statistics.selection import best_epoch
        from advfit.data.splits import make_splits
        from advfit.runtime.layout import list_snapshots, snapshot_name
        from advfit.runtime.snapshot_folder import write_manifest
        from advfit.models.label_noise import training_labels
        from advfit.models.training import train_regime

    cfg = load_config(configfile)
    dataset, model_name = cfg["dataset"]["name"], cfg["model"]["name"]
    if dataset not in ("digits",) and not cfg["dataset"].get("path"):
        raise SystemExit("the baseline reads embedded or local datasets only (no download)")
    tables, figures = outdir / "tables", outdir / "figures"
    tables.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)

    with phase("data + splits"):
        data = PooledData(read_dataset(cfg["dataset"], cfg["dataset"].get("path")))
        spec = cfg["splits"]
        splits = make_splits(data, spec["method"], spec["n_splits"], cfg["seed"],
                             spec.get("validation_fraction", 0.2))

    accuracy_frames, best_rows, adversarial = [], [], {}
    for regime, regime_spec in cfg["regimes"].items():
        for i, split in enumerate(splits):
            run_dir = outdir / dataset / model_name / regime / f"split{i}"
            with phase("train (incl. per-epoch snapshot + test score)"):
                seed = job_seed(cfg["seed"], dataset, model_name, regime, i)
                keras.utils.set_random_seed(seed)
                model = build_model(model_name, data.x.shape[1:], data.n_classes)
                y_train, _ = training_labels(data.y[split["train"]], regime_spec,
                                             data.n_classes, seed)
                history = train_regime(model, regime_spec, data.take(split["train"]),
                                       data.take(split["validation"]), data.take(split["test"]),
                                       run_dir / "snapshots", seed=seed, train_labels=y_train)
                write_manifest(run_dir / "snapshots", regime_spec["epochs"])  # as train_model
                metric = cfg["best_snapshot"]["metric"]
                best = best_epoch(history, metric)
                best_rows.append({"dataset": dataset, "model": model_name, "regime": regime,
                                  "split": i, "best_epoch": best, "metric": metric,
                                  "value": float(history.loc[history.epoch == best, metric].iloc[0]),
                                  "snapshot": snapshot_name(best)})
            sets = {}
            for attack, attack_spec in cfg["attacks"].items():
                with phase("craft adversarial sets"):
                    seed = job_seed(cfg["seed"], dataset, model_name, regime, i, attack)
                    keras.utils.set_random_seed(seed)
                    model = build_model(model_name, data.x.shape[1:], data.n_classes)
                    model.load_weights(run_dir / "snapshots" / snapshot_name(best))
                    spec = AttackSpec.from_config(attack, attack_spec)
                    x_test, y_test = data.take(split["test"])
                    source_seed = job_seed(cfg["seed"], dataset, model_name, regime, i,
                                           "sources")
                    sets[attack] = craft_adversarial_set(
                        model, x_test, y_test, split["test"], spec,
                        cfg["attack_subset_size"], seed, source_seed=source_seed)
                    sets[attack]["best_epoch"] = best
                    adversarial[(regime, i, attack)] = sets[attack]
            with phase("evaluate every snapshot"):
                rows, _ = evaluate_split(model_name, data, split, run_dir / "snapshots", best, sets,
                                         batch_size=cfg["evaluation"]["batch_size"],
                                         train_labels=y_train)
                frame = pd.DataFrame(rows)
                for j, (key, value) in enumerate([("dataset", dataset), ("model", model_name),
                                                  ("regime", regime), ("split", str(i))]):
                    frame.insert(j, key, value)
                accuracy_frames.append(frame)

    metric_frames = []
    metric_spec = cfg.get("robustness_metrics")
    if metric_spec:
        from advfit.evaluation.snapshot_metrics import metric_sample, metrics_by_epoch

        for regime in cfg["regimes"]:
            for i, split in enumerate(splits):
                with phase("robustness metrics of every snapshot"):
                    seed = job_seed(cfg["seed"], dataset, "robustness_metrics")
                    keras.utils.set_random_seed(seed)
                    x, y = data.take(metric_sample(split["test"], metric_spec["n_points"], seed))
                    folder = outdir / dataset / model_name / regime / f"split{i}" / "snapshots"
                    model = build_model(model_name, data.x.shape[1:], data.n_classes)
                    frame = pd.DataFrame(metrics_by_epoch(
                        model, list_snapshots(folder), x, y,
                        metric_spec["metrics"], seed))
                    for j, (key, value) in enumerate([("dataset", dataset), ("model", model_name),
                                                      ("regime", regime), ("split", i)]):
                        frame.insert(j, key, value)
                    metric_frames.append(frame)

    knn_frames = []
    knn_spec = cfg.get("knn")
    if knn_spec:
        from advfit.knn.experiment import SplitKnn, craft_knn_adversarial_set, evaluate_knn_split

        for i, split in enumerate(splits):
            with phase("knn: index + test predictions"):
                classifier = SplitKnn.from_spec(data, split, knn_spec, threads)
                test_predictions = classifier.predict(data.x[split["test"]])
            knn_sets = {}
            best = next(r["best_epoch"] for r in best_rows
                        if r["regime"] == knn_spec["regime"] and r["split"] == i)
            snapshots = outdir / dataset / model_name / knn_spec["regime"] / f"split{i}" / "snapshots"
            for attack in knn_spec.get("attacks", list(cfg["attacks"])):
                with phase("knn: craft adversarial sets"):
                    seed = job_seed(cfg["seed"], dataset, "knn", i, attack)
                    keras.utils.set_random_seed(seed)
                    model = build_model(model_name, data.x.shape[1:], data.n_classes)
                    model.load_weights(snapshots / snapshot_name(best))
                    spec = AttackSpec.from_config(attack, cfg["attacks"][attack])
                    x_test, y_test = data.take(split["test"])
                    knn_sets[attack] = craft_knn_adversarial_set(
                        model, classifier, x_test, y_test, split["test"],
                        test_predictions[knn_spec["z"]], spec,
                        cfg["attack_subset_size"], seed,
                        source_seed=job_seed(cfg["seed"], dataset, "knn", i, "sources"))
            with phase("knn: evaluate"):
                rows, _ = evaluate_knn_split(classifier, data, split, test_predictions, knn_sets)
                frame = pd.DataFrame(rows)
                frame.insert(0, "dataset", dataset)
                frame.insert(1, "split", i)
                knn_frames.append(frame)

    with phase("tables"):
        accuracy = collect_accuracy(accuracy_frames)
        accuracy.to_csv(tables / "accuracy.csv", index=False)
        summarise_accuracy(accuracy).to_csv(tables / "accuracy_summary.csv", index=False)
        best_table = pd.DataFrame(best_rows)
        best_table.to_csv(tables / "best_snapshots.csv", index=False)
        convention = cfg["distances"]["l2_convention"]
        set_rows, per_ae = [], []
        for (regime, i, attack), adv in adversarial.items():
            keys = {"dataset": dataset, "model": model_name, "regime": regime, "split": i,
                    "attack": attack}
            set_rows.append({**keys, "n_tried": int(adv["n_tried"]),
                             "n_success": int(adv["n_success"]), "best_epoch": adv["best_epoch"]})
            norms = perturbation_norms(adv["x"], data.x[adv["source_index"]], convention)
            per_ae.append(pd.DataFrame({**keys, "source_index": adv["source_index"], **norms,
                                        "l2_convention": convention}))
        per_ae = pd.concat(per_ae, ignore_index=True)
        pd.DataFrame(set_rows).to_csv(tables / "adversarial_sets.csv", index=False)
        per_ae.to_csv(tables / "distances.csv", index=False)
        summarise_distances(per_ae).to_csv(tables / "distances_summary.csv", index=False)
        from advfit.statistics import aggregate
        from advfit.runtime.io import read_table

        deltas = aggregate.delta_table(read_table(tables / "accuracy.csv"), best_table)
        tests = aggregate.delta_tests(deltas)
        deltas.to_csv(tables / "delta_accuracy.csv", index=False)
        tests.to_csv(tables / "delta_tests.csv", index=False)
        knn_table = knn_tests = None
        if knn_frames:
            from advfit.statistics.slopes import slope_analysis

            knn_table = pd.concat(knn_frames, ignore_index=True).sort_values(
                ["dataset", "split", "eval_set", "attack", "k"], kind="stable")
            slopes, knn_tests = slope_analysis(knn_table)
            knn_table.to_csv(tables / "knn_accuracy.csv", index=False)
            slopes.to_csv(tables / "knn_slopes.csv", index=False)
            knn_tests.to_csv(tables / "knn_slope_tests.csv", index=False)

        if metric_frames:
            metric_table = pd.concat(metric_frames, ignore_index=True).sort_values(
                ["dataset", "model", "regime", "split", "epoch", "metric"])
            metric_table.to_csv(tables / "robustness_metrics.csv", index=False)

    with phase("figures"):
        from advfit.report import plots

        def figure(fig, name):  # PNG and SVG, as the workflow writes them
            plots.save_figure(fig, figures / f"{name}.png", figures / f"{name}.svg")

        if metric_frames:
            figure(plots.plot_robustness_metrics(metric_table), "robustness_metrics")
        table = read_table(tables / "accuracy.csv")
        figure(plots.plot_accuracy_vs_epoch(table, best_table), "accuracy_vs_epoch")
        figure(plots.plot_asr_vs_epoch(table, best_table), "asr_vs_epoch")
        figure(plots.plot_delta_boxes(deltas, tests), "delta_accuracy")
        figure(plots.plot_l2_distribution(per_ae), "l2_distribution")
        if knn_table is not None:
            figure(plots.plot_knn_train_test_vs_k(knn_table), "knn_train_test_vs_k")
            figure(plots.plot_knn_accuracy_vs_k(knn_table), "knn_accuracy_vs_k")
            figure(plots.plot_knn_slope_pvalues(knn_tests), "knn_slope_pvalues")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--outdir", type=Path, default=None,
                        help="where to write snapshots, tables and figures (default: a temporary "
                             "folder, removed at the end)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S")
    parser.add_argument("--no-csv", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    waited = time.perf_counter()
    load = wait_for_quiet(max_wait_s=args.wait_quiet)
    waited = time.perf_counter() - waited
    account = CpuAccount()
    info = machine()
    print_machine(info)
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="advfit-bench-baseline-"))
    start = time.perf_counter()
    run(args.configfile, args.threads, outdir)
    inside = time.perf_counter() - start
    since_interpreter = time.perf_counter() - T_PROCESS - waited
    print(f"\nbaseline ({args.threads} TensorFlow threads), one process: {inside:.1f} s "
          f"({since_interpreter:.1f} s since the script started, not counting the wait for "
          f"a quiet machine)")
    rows = []
    for name, seconds in PHASES.items():
        print(f"  {name:<48} {seconds:7.1f} s  ({COUNTS[name]} x)")
        rows.append({"phase": name, "seconds": round(seconds, 3), "count": COUNTS[name]})
    rows.append({"phase": "total (inside run)", "seconds": round(inside, 3), "count": 1})
    print(f"outputs in {outdir}" if args.outdir else "outputs removed")
    if not args.outdir:
        shutil.rmtree(outdir, ignore_errors=True)
    info["load_at_start"] = f"{load:.2f}"
    info.update({k: str(v) for k, v in account.stop().items()})
    print(f"CPU used by others while measuring: {info['foreign_share']} of the machine "
          f"({info['cpu_foreign_s']} s; ours {info['cpu_ours_s']} s)")
    info["threads"] = str(args.threads)
    if not args.no_csv:
        write_csv("baseline", rows, info)


if __name__ == "__main__":
    main()
