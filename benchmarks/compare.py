"""Benchmarks 1 + 2 back to back: the workflow against the hand-written baseline.

Runs, in one invocation and on the same machine state, the default workflow
(benchmarks/workflow.py's run: ``snakemake --cores N`` in a fresh temporary
folder) and the one-process baseline (benchmarks/baseline.py, as its own
``python`` process, timed from outside: interpreter start and imports count),
``--repeat`` times alternating the order, and prints the ratio
pipeline wall / baseline wall (target <= 1.0 at --cores 2). It also checks
that both produced the same accuracy table (same seeds, deterministic
TensorFlow), i.e. that the baseline did the same work.

    python benchmarks/compare.py [--cores 2] [--repeat 1] [--wait-quiet 600]

Writes benchmarks/out/compare.csv (one row per run) and, for the last
workflow run, benchmarks/out/workflow*.csv as benchmarks/workflow.py does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import (CpuAccount, loadavg, machine, print_machine,  # noqa: E402
                    wait_for_quiet, write_csv)
from workflow import (print_summary, run_workflow, source_env, time_imports,  # noqa: E402
                      workflow_parser)

TARGET = 1.0


def run_baseline(configfile: Path, outdir: Path, threads: int,
                 snakefile: Path) -> tuple[float, dict]:
    argv = [sys.executable, str(_HERE / "baseline.py"), "--configfile", str(configfile),
            "--outdir", str(outdir), "--no-csv"]
    argv += ["--threads", str(threads)]
    account = CpuAccount()
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=source_env(snakefile))
    wall = time.perf_counter() - start
    cpu = account.stop()
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    report = proc.stdout[proc.stdout.find("\nbaseline ("):]
    print("  " + report.strip().replace("\n", "\n  "))
    return wall, cpu


def same_accuracy(workdir: Path, outdir: Path) -> str:
    import pandas as pd

    found = []
    for name in ("accuracy.csv", "knn_accuracy.csv", "best_snapshots.csv"):
        a = workdir / "results" / "tables" / name
        b = outdir / "tables" / name
        if not (a.is_file() and b.is_file()):
            continue
        wf = pd.read_csv(a, keep_default_na=False)
        bl = pd.read_csv(b, keep_default_na=False)
        cols = [c for c in wf.columns if c in bl.columns]
        wf, bl = wf[cols].astype(str), bl[cols].astype(str)
        keys = [c for c in cols if c not in ("n", "n_correct", "accuracy", "value")]
        wf, bl = (t.sort_values(keys).reset_index(drop=True) for t in (wf, bl))
        found.append(f"{name}: {'identical' if wf.equals(bl) else 'DIFFERENT'}")
    return "; ".join(found) or "no tables to compare"


def main() -> None:
    parser = workflow_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs, order alternating")
    parser.add_argument("--baseline-threads", default=str(os.cpu_count()),
                        help="TensorFlow threads of the baseline (default: nproc); a list such "
                             "as 2,1 runs one baseline per value, the ratio uses the first; with "
                             "1 (the jobs' setting) the tables must be identical to the workflow's")
    parser.add_argument("--keep", action="store_true",
                        help="keep both runs' folders (printed) to inspect their outputs")
    parser.add_argument("--imports", action="store_true",
                        help="also time the stand-alone imports first (workflow_imports.csv)")
    args = parser.parse_args()

    args.snakefile = args.snakefile.resolve()
    args.configfile = (args.configfile or args.snakefile.parent / "config.yaml").resolve()
    load = wait_for_quiet(max_wait_s=args.wait_quiet)
    info = machine()
    info["snakefile"] = str(args.snakefile)
    print_machine(info)
    if args.imports:
        print("stand-alone start-up (median of 3 fresh interpreters):")
        write_csv("workflow_imports", time_imports(args.snakefile))
    rows, last_summary = [], None
    for i in range(args.repeat):
        order = ("workflow", "baseline") if i % 2 == 0 else ("baseline", "workflow")
        result = {"pair": i + 1, "order": "+".join(order)}
        outdir = Path(tempfile.mkdtemp(prefix="advfit-bench-baseline-"))
        workdir, baselines = None, []
        for which in order:
            result[f"load_before_{which}"] = loadavg()[0]
            print(f"\n[{i + 1}/{args.repeat}] {which} ...", flush=True)
            if which == "workflow":
                summary, rows_jobs = run_workflow(args.cores, args.configfile, keep=True,
                                                  snakefile=args.snakefile)
                workdir = Path(summary["workdir"])
                result["workflow_wall_s"] = summary["wall_s"]
                result["workflow_startup_share"] = summary["startup_share_of_capacity"]
                result["workflow_foreign_cpu_share"] = summary["foreign_share"]
                last_summary = (summary, rows_jobs)
                print(f"  workflow: {summary['wall_s']:.1f} s", flush=True)
            else:
                for j, threads in enumerate(int(t) for t in args.baseline_threads.split(",")):
                    folder = outdir / f"threads{threads}"
                    wall, cpu = run_baseline(args.configfile, folder, threads, args.snakefile)
                    suffix = "" if j == 0 else f"_threads{threads}"
                    result[f"baseline{suffix}_threads"] = threads
                    result[f"baseline{suffix}_wall_s"] = round(wall, 2)
                    result[f"baseline{suffix}_cpu_s"] = cpu["cpu_ours_s"]
                    result[f"baseline{suffix}_foreign_cpu_share"] = cpu["foreign_share"]
                    baselines.append((threads, folder, suffix))
                    print(f"  baseline ({threads} TF threads): {wall:.1f} s (process, from "
                          f"outside); CPU {cpu['cpu_ours_s']} s; others used "
                          f"{cpu['foreign_share']:.0%} of the machine", flush=True)
        result["ratio_pipeline_over_baseline"] = round(result["workflow_wall_s"]
                                                       / result["baseline_wall_s"], 3)
        for threads, folder, suffix in baselines:
            result[f"same_numbers{suffix}"] = f"baseline {threads} thread(s): " + same_accuracy(
                workdir, folder)
        if args.keep:
            print(f"  kept: workflow {workdir}, baseline {outdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(outdir, ignore_errors=True)
        rows.append(result)
        print(f"  pipeline / baseline = {result['ratio_pipeline_over_baseline']:.2f}  "
              f"[target <= {TARGET}: "
              f"{'met' if result['ratio_pipeline_over_baseline'] <= TARGET else 'MISSED'}]",
              flush=True)
        for key in result:
            if key.startswith("same_numbers"):
                print(f"  {result[key]}")

    if last_summary:
        summary, rows_jobs = last_summary
        summary["workdir"] = "(removed)"
        print_summary(summary)
        per_rule = summary.pop("per_rule")
        write_csv("workflow", [{"metric": k, "value": v} for k, v in summary.items()])
        write_csv("workflow_jobs", rows_jobs)
        write_csv("workflow_rules", [{"rule": r, **c} for r, c in per_rule.items()])
    info["load_at_start"] = f"{load:.2f}"
    write_csv("compare", rows, info)


if __name__ == "__main__":
    main()
