"""Benchmark 1: the default workflow, end to end, and where its time goes.

Runs ``snakemake --cores N`` on the repository's Snakefile and config.yaml in a
fresh temporary working directory (nothing of the checkout's results/ is
touched or reused) and reports:

- the wall time of the whole run;
- per job: its wall time (the rule's benchmark file, column ``s``, where the
  rule has one, else the process's own lifetime, traced), the time spent
  inside ``advfit.jobs.job_log`` (the log's "done in X s" line), the
  difference (starting the shell and Python, unpickling Snakemake's job
  object, importing the rule script's modules before ``job_log``), and the
  time of the first import of TensorFlow (+ Keras, cleverhans, ART) inside
  the job;
- the start-up share: (sum of those start-up costs over every job) /
  (cores x wall time), i.e. the fraction of the machine's capacity during the
  run that went into starting processes and importing libraries;
- stand-alone timings of ``python -c pass``, ``python -c "import tensorflow"``
  and friends, for reference.

    python benchmarks/workflow.py [--cores 2] [--configfile config.yaml]
                                  [--wait-quiet 600] [--keep]

Writes benchmarks/out/workflow.csv (summary), benchmarks/out/workflow_jobs.csv
(one row per job) and benchmarks/out/workflow_imports.csv.

Per-job tracing: benchmarks/jobtrace/sitecustomize.py is put on PYTHONPATH
(it only acts in processes running a Snakemake script); its cost is one Python
call per import statement, well under 1% of a job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, CpuAccount, machine, median, print_machine,  # noqa: E402
                    time_command, wait_for_quiet, write_csv)

HOOK = Path(__file__).resolve().parent / "jobtrace"
DONE_IN = re.compile(r"done in ([0-9.]+) s")
WARM_READY = re.compile(r"ready in ([0-9.]+) s")
WARM_CPU = re.compile(r"exiting; CPU time: ([0-9.]+) s")
TF_STACK = ("tensorflow", "keras", "cleverhans", "art")

IMPORT_PROBES = {
    "python -c pass": "pass",
    "import snakemake preamble (snakemake.iocontainers, snakemake.logging)":
        "import snakemake.iocontainers, snakemake.logging",
    "import tensorflow": "import tensorflow",
    "import tensorflow, keras": "import tensorflow, keras",
    "advfit.runtime.device.configure(1) (TF + Keras + thread set-up)":
        "from advfit import runtime; runtime.configure(1)",
    "import tensorflow, keras, cleverhans.tf2 attacks":
        "import tensorflow, keras; from cleverhans.tf2.attacks import fast_gradient_method, "
        "projected_gradient_descent",
    "import pandas": "import pandas",
    "import matplotlib.pyplot, seaborn": "import matplotlib; matplotlib.use('Agg'); "
                                         "import matplotlib.pyplot, seaborn",
}


def time_imports(snakefile: Path = REPO / "Snakefile", repeat: int = 3) -> list[dict]:
    """Median wall time of each stand-alone probe (a fresh interpreter each time)."""
    rows = []
    env = {**source_env(snakefile), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for label, code in IMPORT_PROBES.items():
        times = time_command([sys.executable, "-c", code], repeat=repeat, env=env)
        rows.append({"probe": label, "median_s": round(median(times), 3),
                     "min_s": round(min(times), 3), "runs": repeat})
        print(f"  {label:<70} {median(times):6.2f} s (min {min(times):.2f})", flush=True)
    return rows


def read_bench(workdir: Path) -> dict[str, float]:
    """Benchmark ``s`` per job, keyed by the job's log path (benchmarks/ -> logs/)."""
    out = {}
    root = workdir / "results" / "benchmarks"
    for tsv in root.rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        header, values = lines[0].split("\t"), lines[-1].split("\t")
        seconds = float(values[header.index("s")])
        log = "results/logs/" + str(tsv.relative_to(root).with_suffix(".log"))
        out[log] = seconds
    return out


def read_done_in(workdir: Path, log: str) -> float | None:
    path = workdir / log
    if not path.is_file():
        return None
    found = DONE_IN.findall(path.read_text(errors="replace"))
    return float(found[-1]) if found else None


def read_warm_servers(workdir: Path, wait_s: float = 30.0) -> tuple[list[float], float]:
    """Start-up seconds of every warm interpreter the run started (advfit.jobs.warm),
    and the CPU seconds they and their children used.

    They run in their own session, so the CPU account of this process does not
    see them: their logs say it when they exit (the workflow stops them at its
    end; wait for that).
    """
    folder = workdir / ".snakemake" / "advfit-warm"
    logs = list(folder.glob("*.log")) if folder.is_dir() else []
    deadline = time.monotonic() + wait_s
    while any(WARM_READY.search(log.read_text(errors="replace")) and
              not WARM_CPU.search(log.read_text(errors="replace")) for log in logs):
        if time.monotonic() > deadline:
            print("  WARNING: a warm interpreter has not exited: its CPU time is missing")
            break
        time.sleep(0.2)
    ready, cpu = [], 0.0
    for log in logs:
        text = log.read_text(errors="replace")
        ready += [float(v) for v in WARM_READY.findall(text)]
        cpu += sum(float(v) for v in WARM_CPU.findall(text))
    return ready, cpu


def read_trace(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def source_env(snakefile: Path, extra: list[str] | None = None) -> dict:
    """The environment with the advfit of ``snakefile``'s checkout first on PYTHONPATH.

    For the repository itself that is the installed (editable) copy anyway; for
    a prototype copy (``--snakefile /tmp/copy/Snakefile``) it makes the jobs and
    the workflow's own check import the copy's ``src/advfit``.
    """
    env = dict(os.environ)
    paths = [*(extra or []), str(Path(snakefile).resolve().parent / "src")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_snakemake(argv: list[str], workdir: Path, env: dict) -> tuple[float, dict, list[float]]:
    """Run ``argv`` (a snakemake call) in ``workdir``, its output in ``_snakemake.out``;
    return (wall s, CPU account, warm interpreters' start times). The warm
    interpreters run in their own session: their CPU time is counted as ours."""
    account = CpuAccount()
    start = time.perf_counter()
    with open(workdir / "_snakemake.out", "w") as console:
        proc = subprocess.run(argv, cwd=workdir, env=env, stdout=console,
                              stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    warm_starts, warm_cpu = read_warm_servers(workdir)
    cpu = account.stop(extra_ours=warm_cpu)
    if proc.returncode != 0:
        tail = (workdir / "_snakemake.out").read_text()[-4000:]
        raise SystemExit(f"snakemake failed (exit {proc.returncode}); output kept in {workdir}\n"
                         f"{tail}")
    return wall, cpu, warm_starts


def run_workflow(cores: int = 2, configfile: Path | None = None, keep: bool = False,
                 extra_args: list[str] | None = None,
                 snakefile: Path | None = None) -> tuple[dict, list[dict]]:
    """Run the workflow once in a fresh directory; return (summary, per-job rows)."""
    snakefile = Path(snakefile or REPO / "Snakefile").resolve()
    configfile = Path(configfile or snakefile.parent / "config.yaml").resolve()
    workdir = Path(tempfile.mkdtemp(prefix="advfit-bench-workflow-"))
    trace = workdir / "_jobtrace.jsonl"
    env = source_env(snakefile, [str(HOOK)])
    env["ADVFIT_BENCH_TRACE"] = str(trace)
    snakemake = Path(sys.executable).with_name("snakemake")
    argv = [str(snakemake), "-s", str(snakefile), "--directory", str(workdir),
            "--configfile", str(configfile), "--cores", str(cores), *(extra_args or [])]
    print(f"  running: {' '.join(argv)}", flush=True)
    t_launch = time.time()
    wall, cpu, warm_starts = run_snakemake(argv, workdir, env)

    bench = read_bench(workdir)
    records = read_trace(trace)
    rows = []
    for rec in sorted(records, key=lambda r: r["t_start"]):
        log = rec["log"]
        proc_wall = rec["t_exit"] - rec["t_start"]
        bench_s = bench.get(log)
        done_in = read_done_in(workdir, log) if log else None
        job_wall = bench_s if bench_s is not None else proc_wall
        imports = rec.get("imports", {})
        tf_stack = sum(imports.get(name, 0.0) for name in TF_STACK)
        rows.append({
            "rule": rec["rule"], "log": log,
            "start_s": round(rec["t_start"] - t_launch, 3),
            "end_s": round(rec["t_exit"] - t_launch, 3),
            "bench_s": bench_s, "process_s": round(proc_wall, 3),
            "job_wall_s": round(job_wall, 3),
            "done_in_s": done_in,
            "outside_job_log_s": round(job_wall - done_in, 3) if done_in is not None else None,
            "before_site_s": round(rec["t_site"] - rec["t_start"], 3),
            "import_tensorflow_s": round(imports.get("tensorflow", 0.0), 3),
            "import_keras_s": round(imports.get("keras", 0.0), 3),
            "import_cleverhans_s": round(imports.get("cleverhans", 0.0), 3),
            "import_art_s": round(imports.get("art", 0.0), 3),
            "import_snakemake_s": round(imports.get("snakemake", 0.0), 3),
            "import_pandas_s": round(imports.get("pandas", 0.0), 3),
            "import_matplotlib_s": round(imports.get("matplotlib", 0.0), 3),
            "import_tf_stack_s": round(tf_stack, 3),
            "uses_tensorflow": "tensorflow" in imports,
        })
    traced_logs = {r["log"] for r in rows}
    untraced_bench = {log: s for log, s in bench.items() if log not in traced_logs}

    n_jobs = len(rows)
    sum_bench = sum(r["bench_s"] for r in rows if r["bench_s"] is not None)
    n_bench = sum(r["bench_s"] is not None for r in rows)
    unbenched = [r for r in rows if r["bench_s"] is None]
    sum_unbenched_process = sum(r["process_s"] for r in unbenched)
    sum_unbenched_done = sum(r["done_in_s"] or 0.0 for r in unbenched)
    sum_job_wall = sum(r["job_wall_s"] for r in rows)
    sum_outside = sum(r["outside_job_log_s"] or 0.0 for r in rows)
    tf_jobs = [r for r in rows if r["uses_tensorflow"]]
    sum_tf_import = sum(r["import_tf_stack_s"] for r in rows)
    sum_tf_only = sum(r["import_tensorflow_s"] for r in rows)
    # A warm interpreter imports the libraries once, outside any job: count it.
    startup = sum_outside + sum_tf_import + sum(warm_starts)
    capacity = cores * wall
    first_start = min((r["start_s"] for r in rows), default=float("nan"))
    last_end = max((r["end_s"] for r in rows), default=float("nan"))

    per_rule = defaultdict(lambda: Counter())
    for r in rows:
        c = per_rule[r["rule"]]
        c["n"] += 1
        c["wall"] += r["job_wall_s"]
        c["inside"] += r["done_in_s"] or 0.0
        c["outside"] += r["outside_job_log_s"] or 0.0
        c["tf"] += r["import_tf_stack_s"]

    summary = {
        "cores": cores, "wall_s": round(wall, 2), "n_jobs": n_jobs,
        "n_benchmarked_jobs": n_bench, "sum_benchmark_s": round(sum_bench, 2),
        "n_unbenchmarked_jobs": len(unbenched),
        "sum_unbenchmarked_process_s": round(sum_unbenched_process, 2),
        "sum_unbenchmarked_done_in_s": round(sum_unbenched_done, 2),
        "sum_job_wall_s": round(sum_job_wall, 2),
        "utilisation": round(sum_job_wall / capacity, 3),
        "n_tf_jobs": len(tf_jobs),
        "sum_outside_job_log_s": round(sum_outside, 2),
        "mean_outside_job_log_s": round(sum_outside / max(n_jobs, 1), 3),
        "sum_tf_stack_import_in_jobs_s": round(sum_tf_import, 2),
        "warm_interpreters_started": len(warm_starts),
        "warm_interpreter_startup_s": round(sum(warm_starts), 2),
        "sum_tensorflow_import_in_jobs_s": round(sum_tf_only, 2),
        "mean_tf_stack_import_per_tf_job_s": round(sum_tf_import / max(len(tf_jobs), 1), 3),
        "startup_core_s": round(startup, 2),
        "startup_share_of_capacity": round(startup / capacity, 3),
        "startup_share_of_job_time": round(startup / max(sum_job_wall, 1e-9), 3),
        "snakemake_before_first_job_s": round(first_start, 2),
        "snakemake_after_last_job_s": round(wall - last_end, 2),
        "untraced_benchmarked_jobs": len(untraced_bench),
        **cpu,
        "workdir": str(workdir) if keep else "(removed)",
    }
    summary["per_rule"] = {rule: dict(c) for rule, c in per_rule.items()}
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary, rows


def print_summary(summary: dict) -> None:
    s = summary
    print(f"\nworkflow wall time ({s['cores']} cores): {s['wall_s']:.1f} s  "
          f"[target <= 180 s: {'met' if s['wall_s'] <= 180 else 'MISSED'}]")
    print(f"jobs: {s['n_jobs']} ({s['n_tf_jobs']} import TensorFlow); "
          f"{s['n_benchmarked_jobs']} with a benchmark file, sum s = {s['sum_benchmark_s']:.1f}; "
          f"{s['n_unbenchmarked_jobs']} without: process time {s['sum_unbenchmarked_process_s']:.1f} s, "
          f"inside job_log {s['sum_unbenchmarked_done_in_s']:.1f} s")
    print(f"sum of job wall times: {s['sum_job_wall_s']:.1f} core-s = {s['utilisation']:.0%} of "
          f"{s['cores']} x wall")
    print(f"start-up: outside job_log {s['sum_outside_job_log_s']:.1f} s "
          f"(mean {s['mean_outside_job_log_s']:.2f} s/job) + TF/Keras/cleverhans/ART imports "
          f"inside jobs {s['sum_tf_stack_import_in_jobs_s']:.1f} s "
          f"(mean {s['mean_tf_stack_import_per_tf_job_s']:.2f} s per TF job) + "
          f"{s['warm_interpreters_started']} warm interpreter(s) starting "
          f"{s['warm_interpreter_startup_s']:.1f} s = "
          f"{s['startup_core_s']:.1f} core-s")
    print(f"start-up share: {s['startup_share_of_capacity']:.1%} of cores x wall, "
          f"{s['startup_share_of_job_time']:.1%} of job time  "
          f"[target <= 15%: {'met' if s['startup_share_of_capacity'] <= 0.15 else 'MISSED'}]")
    print(f"snakemake alone: {s['snakemake_before_first_job_s']:.1f} s before the first job, "
          f"{s['snakemake_after_last_job_s']:.1f} s after the last")
    print(f"CPU during the run: ours {s['cpu_ours_s']:.0f} s, others' {s['cpu_foreign_s']:.0f} s "
          f"({s['foreign_share']:.0%} of the machine: "
          f"{'quiet' if s['foreign_share'] < 0.05 else 'NOT quiet, figures inflated'})")
    print("\nper rule:                          n   wall s  inside s  outside s  TF-import s")
    for rule, c in sorted(s["per_rule"].items(), key=lambda kv: -kv[1]["wall"]):
        print(f"  {rule:<30} {c['n']:3d} {c['wall']:8.1f} {c['inside']:9.1f} "
              f"{c['outside']:10.1f} {c['tf']:12.1f}")


def workflow_parser(doc: str) -> argparse.ArgumentParser:
    """Options shared with compare.py: what to run, on how many cores."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", type=Path, default=None,
                        help="default: the config.yaml beside the Snakefile")
    parser.add_argument("--snakefile", type=Path, default=REPO / "Snakefile",
                        help="another checkout's Snakefile (a prototype copy): its workflow, and "
                             "its src/ first on PYTHONPATH")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for the 1-minute load to drop below 0.7")
    return parser


def main() -> None:
    parser = workflow_parser(__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    parser.add_argument("--no-imports", action="store_true", help="skip the stand-alone import timings")
    args = parser.parse_args()

    load = wait_for_quiet(max_wait_s=args.wait_quiet)
    info = machine()
    print_machine(info)
    import_rows = []
    if not args.no_imports:
        print("stand-alone start-up (median of 3 fresh interpreters):")
        import_rows = time_imports(args.snakefile)
    summary, rows = run_workflow(args.cores, args.configfile, args.keep,
                                 snakefile=args.snakefile)
    info["snakefile"] = str(args.snakefile.resolve())
    info["load_at_start"] = f"{load:.2f}"
    info["load_after"] = " ".join(f"{v:.2f}" for v in __import__("common").loadavg())
    print_summary(summary)
    per_rule = summary.pop("per_rule")
    write_csv("workflow", [{"metric": k, "value": v} for k, v in summary.items()], info)
    write_csv("workflow_jobs", rows)
    write_csv("workflow_rules", [{"rule": r, **c} for r, c in per_rule.items()])
    if import_rows:
        write_csv("workflow_imports", import_rows)


if __name__ == "__main__":
    main()
