"""Benchmark 10: paper 002 on CIFAR-10 at paper scale, one fold, extrapolated to the whole protocol.

Generates a config from ``configs/paper002_cifar10.yaml`` (the real CIFAR-10
copy given by ``--cifar``; LeNet-5, 5-fold CV, both regimes, the paper's three
attacks and three robustness metrics at the paper's settings) with the slice's
reductions, and runs ``snakemake`` on it in a fresh directory for split 0
only (targets: each regime's ``accuracy.csv`` and ``robustness_metrics.csv``,
i.e. fetch_dataset, prepare_dataset, make_splits, then per regime
train_model, select_best_snapshot, craft_adversarial_set x 3,
evaluate_snapshots and compute_robustness_metrics). The reductions, each an
option:

- ``--epochs`` E' (paper: 35): training epochs; the snapshots the metrics and
  the evaluation see are these E' (``--epochs`` is the "number of snapshots
  for the metrics" too);
- ``--train`` (default ``all``: 40 000 training images in split 0): a
  stratified slice of CIFAR-10's training part (``dataset.subset``);
- ``--attacked`` (paper: ``all``, every correctly classified test image):
  ``attack_subset_size``;
- ``--metric-points`` (paper config: 100): ``robustness_metrics.n_points``.

Per job it reads its log and Snakemake's ``benchmark:`` file. Model jobs run
in the warm interpreter, as in any local run (``--no-warm``: each in its own
process); their logs end with the child's exact peak RSS and CPU time
(getrusage), which the benchmark file cannot see. The log's timestamps give
the part of a job that grows with the protocol's size, its *work*: the epochs
of train_model (the mean of the steady epochs, i.e. after the first, which
traces, times the number of epochs), the attack of craft_adversarial_set (log
lines "attacking n of m" to "AEs fool"), the snapshot pass of
evaluate_snapshots, the snapshots of compute_robustness_metrics (steady ones,
as for training). The rest of the job (start-up, data loading, writing) is kept
as it is; the work is scaled linearly by units (epochs x training images,
attacked points, snapshots x samples scored, snapshots x metric points) to the
protocol's, and the job count to its 5 splits x 2 regimes (:func:`extrapolate`).

Two clocks: a job's *cost* is its CPU time (what a core of its own would take:
the jobs run one TensorFlow thread; the work is scaled by the job's CPU / wall
ratio), or its wall time as measured on this machine (inflated by the others'
load on a shared machine). The extrapolated wall time on ``--cores`` cores is
the larger of (one-off jobs + the per-run jobs' total / cores) and the longest
chain of one split x regime (10 independent chains keep 2 cores busy). The
aggregation jobs (tables, tests, figures: 9 of the protocol's 82) are not in
the slice and not in the estimate.

Attacked points in the full protocol: every test image the best snapshot
classifies correctly (``--full-attacked``, default 10 000: the whole test
set, an upper bound; the estimate with the slice's own accuracy at M is
printed too).

    python benchmarks/paper_scale.py [--epochs 3] [--train all] [--attacked 100]
        [--metric-points 10] [--cores 2] [--eval-batch 1024] [--attack-batch N]
        [--cifar ../shared/data/cifar-10-batches-py] [--workdir DIR] [--keep]

Writes benchmarks/out/paper_scale.csv (per rule: measured and extrapolated)
and benchmarks/out/paper_scale_jobs.csv (per job).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from common import REPO, machine, print_machine, wait_for_quiet, write_csv  # noqa: E402
from workflow import run_snakemake  # noqa: E402

sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != _HERE]

CIFAR = _HERE.parent.parent / "shared" / "data" / "cifar-10-batches-py"
PAPER_CONFIG = REPO / "configs" / "paper002_cifar10.yaml"

# The whole protocol of configs/paper002_cifar10.yaml.
FULL = {"epochs": 35, "n_train": 40000, "n_validation": 10000, "n_test": 10000,
        "metric_points": 100, "splits": 5, "regimes": 2, "attacks": 3}
PER_RUN_RULES = ("train_model", "select_best_snapshot", "craft_adversarial_set",
                 "evaluate_snapshots", "compute_robustness_metrics")
ONE_OFF_RULES = ("fetch_dataset", "prepare_dataset", "make_splits")

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (.*)$")
_EPOCH = re.compile(r"^epoch (\d+): ")
_ATTACKING = re.compile(r"^(\S+): attacking (\d+) of (\d+) correctly classified test samples")
_FOOLED = re.compile(r"^(\S+): (\d+) of (\d+) AEs fool the best snapshot")
_PROGRESS = re.compile(r"^(\S+): (\d+)/(\d+) images done")
_EVALUATING = re.compile(r"^evaluating (\d+) snapshots on (\d+) samples")
_PEAK = re.compile(r"peak RSS (\d+) MiB")
_DONE = re.compile(r"done in ([0-9.]+) s")
_CHILD_CPU = re.compile(r"warm interpreter child: peak RSS \d+ MiB, CPU ([0-9.]+) s")


# --------------------------------------------------------------------------- the arithmetic


@dataclass
class Job:
    """One measured job: its rule, wall seconds, the seconds of its scalable
    work and the units of work they did (what :func:`full_units` counts).

    ``cpu_s``: the CPU time of the job's processes (the benchmark file's
    ``cpu_time``). With ``clock="cpu"`` the job's cost is its CPU time and its
    work's cost the work's wall seconds times the job's CPU / wall ratio: on a
    shared machine the wall times stretch with the others' load, while the
    CPU time is what a core of its own would take (jobs run one thread).
    """
    rule: str
    wall_s: float
    work_s: float = 0.0
    units: float = 0.0
    max_rss_mb: float = float("nan")
    name: str = ""
    extra: dict = field(default_factory=dict)
    cpu_s: float = float("nan")
    clock: str = "wall"

    @property
    def cost_s(self) -> float:
        if self.clock == "cpu" and self.cpu_s == self.cpu_s and self.wall_s > 0:
            return self.cpu_s
        return self.wall_s

    @property
    def work_cost_s(self) -> float:
        if self.wall_s <= 0:
            return self.work_s
        return self.work_s * self.cost_s / self.wall_s


def full_units(rule: str, n_correct: float, full: dict = FULL) -> float:
    """Units of work of one job of ``rule`` in the whole protocol.

    ``n_correct``: test images the best snapshot classifies correctly (every
    one is attacked; each attack's AEs are assumed all kept, an upper bound).
    train_model: epochs x training images; craft_adversarial_set: attacked
    points; evaluate_snapshots: snapshots x samples scored (train, validation,
    test, fail subset, every adversarial set); compute_robustness_metrics:
    snapshots x metric points. Other rules: 0 (not scaled).
    """
    if rule == "train_model":
        return full["epochs"] * full["n_train"]
    if rule == "craft_adversarial_set":
        return n_correct
    if rule == "evaluate_snapshots":
        samples = (full["n_train"] + full["n_validation"] + full["n_test"]
                   + (full["n_test"] - n_correct) + full["attacks"] * n_correct)
        return full["epochs"] * samples
    if rule == "compute_robustness_metrics":
        return full["epochs"] * full["metric_points"]
    return 0.0


def scaled_job_seconds(job: Job, units_full: float) -> float:
    """The job at full scale: its fixed part as measured plus its work scaled
    linearly by units (a job without measured work is kept as it is)."""
    if job.units <= 0 or units_full <= 0:
        return job.cost_s
    fixed = max(job.cost_s - job.work_cost_s, 0.0)
    return fixed + job.work_cost_s * units_full / job.units


def extrapolate(jobs: list[Job], n_correct: float, cores: int, full: dict = FULL) -> dict:
    """Per rule and in total: the slice's jobs scaled to the whole protocol.

    Per-run rules: mean full-scale seconds per job over the slice's jobs of
    that rule, times the protocol's number of such jobs (splits x regimes,
    x attacks for craft_adversarial_set). One-off rules: as measured.
    Wall time on ``cores`` single-threaded job slots: one-offs (a chain before
    anything else) plus the larger of the per-run total / cores and the
    longest single split x regime chain (train, select, then the attacks and
    the evaluation in sequence after it, or the metrics, whichever is longer:
    the bound when jobs outnumber cores is the total / cores).
    """
    runs = full["splits"] * full["regimes"]
    rules = {}
    for rule in dict.fromkeys(j.rule for j in jobs):
        mine = [j for j in jobs if j.rule == rule]
        per_job = [scaled_job_seconds(j, full_units(rule, n_correct, full)) for j in mine]
        mean = sum(per_job) / len(per_job)
        if rule in PER_RUN_RULES:
            count = runs * (full["attacks"] if rule == "craft_adversarial_set" else 1)
        else:
            count = len(mine)
        rules[rule] = {"jobs_measured": len(mine),
                       "measured_wall_s": sum(j.wall_s for j in mine),
                       "measured_cost_s": sum(j.cost_s for j in mine),
                       "work_cost_s": sum(j.work_cost_s for j in mine),
                       "max_rss_mb": max((j.max_rss_mb for j in mine if j.max_rss_mb == j.max_rss_mb),
                                          default=float("nan")),
                       "per_job_full_s": mean, "jobs_full": count,
                       "total_full_s": mean * count}
    one_off = sum(r["total_full_s"] for k, r in rules.items() if k not in PER_RUN_RULES)
    per_run_total = sum(r["total_full_s"] for k, r in rules.items() if k in PER_RUN_RULES)

    def per_job(rule):
        return rules[rule]["per_job_full_s"] if rule in rules else 0.0

    attacks_then_eval = (per_job("craft_adversarial_set") * full["attacks"]
                         + per_job("evaluate_snapshots"))
    chain = (per_job("train_model") + per_job("select_best_snapshot")
             + max(attacks_then_eval, per_job("compute_robustness_metrics")))
    wall = one_off + max(per_run_total / cores, chain)
    return {"rules": rules, "one_off_s": one_off, "per_run_total_s": per_run_total,
            "cpu_total_s": one_off + per_run_total, "chain_s": chain, "wall_s": wall,
            "cores": cores, "n_correct": n_correct}


# --------------------------------------------------------------------------- reading a run


def _stamped(log: Path) -> list[tuple[float, str]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        match = _STAMP.match(line)
        if match:
            when = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            lines.append((when, match.group(2)))
    return lines


def _epoch_marks(lines) -> list[float]:
    return [t for t, message in lines if _EPOCH.match(message)]


def work_from_log(rule: str, log: Path, wall_s: float) -> tuple[float, float, dict]:
    """(work seconds, units, extra) of one job from its log's timestamps."""
    if not log.is_file():
        return 0.0, 0.0, {}
    lines = _stamped(log)
    if rule in ("train_model", "compute_robustness_metrics"):
        marks = _epoch_marks(lines)
        if len(marks) < 2:
            return 0.0, 0.0, {"note": "needs >= 2 epochs to time one"}
        # Steady epochs (the first one traces): their mean stands for every epoch.
        steady = (marks[-1] - marks[0]) / (len(marks) - 1)
        work = steady * len(marks)
        extra = {"epochs": len(marks), "steady_epoch_s": round(steady, 3)}
        return work, float(len(marks)), extra  # units per epoch set by the caller
    if rule == "craft_adversarial_set":
        start = [(t, m) for t, m in lines if _ATTACKING.match(m)]
        end = [(t, m) for t, m in lines if _FOOLED.match(m)]
        if not start or not end:
            return 0.0, 0.0, {}
        attacked = int(_ATTACKING.match(start[0][1]).group(2))
        correct = int(_ATTACKING.match(start[0][1]).group(3))
        kept = int(_FOOLED.match(end[-1][1]).group(2))
        extra = {"correct_at_best": correct, "kept": kept}
        work = end[-1][0] - start[0][0]
        # Attacks run chunk by chunk (CW, DeepFool, HopSkipJump) log each chunk:
        # with two or more, the chunks after the first (which traces) give the
        # steady cost per point.
        chunks = [(t, int(m.group(2))) for t, text in lines if (m := _PROGRESS.match(text))]
        if len(chunks) >= 2 and chunks[-1][1] > chunks[0][1]:
            per_point = (chunks[-1][0] - chunks[0][0]) / (chunks[-1][1] - chunks[0][1])
            work = min(work, per_point * attacked)
            extra["steady_s_per_point"] = round(per_point, 4)
        return work, float(attacked), extra
    if rule == "evaluate_snapshots":
        for i, (t, message) in enumerate(lines):
            match = _EVALUATING.match(message)
            if match and i + 1 < len(lines):
                snapshots, samples = int(match.group(1)), int(match.group(2))
                return lines[i + 1][0] - t, float(snapshots * samples), {
                    "snapshots": snapshots, "samples": samples}
        return 0.0, 0.0, {}
    return 0.0, 0.0, {}


def read_jobs(workdir: Path, n_train: int, metric_points: int,
              clock: str = "cpu") -> list[Job]:
    """Every job of the run, from its log (results/logs/**.log) and, where the
    rule has one, its benchmark file (results/benchmarks/**.tsv: wall ``s`` and
    ``max_rss``). A rule without a benchmark file (fetch_dataset, make_splits,
    select_best_snapshot) is timed by its log's "done in X s" (the job's own
    code, without its process start)."""
    jobs = []
    bench_root, log_root = workdir / "results" / "benchmarks", workdir / "results" / "logs"
    for log in sorted(log_root.rglob("*.log")):
        relative = log.relative_to(log_root).with_suffix("")
        rule = relative.name
        if rule.startswith("craft_adversarial_set_"):
            rule = "craft_adversarial_set"
        text = log.read_text(errors="replace")
        tsv = bench_root / relative.with_suffix(".tsv")
        rss = cpu = float("nan")
        if tsv.is_file():
            row = list(csv.DictReader(tsv.read_text().splitlines(), delimiter="\t"))[-1]
            wall = float(row["s"])
            if row.get("max_rss") not in (None, "", "NA", "-"):
                rss = float(row["max_rss"])
            if row.get("cpu_time") not in (None, "", "NA", "-"):
                cpu = float(row["cpu_time"])
        elif done := _DONE.findall(text):
            wall = float(done[-1])
        else:
            continue  # not an advfit job log
        if peak := _PEAK.findall(text):  # a warm interpreter's child reports its own peak
            rss = max(rss if rss == rss else 0.0, float(peak[-1]))
        if child := _CHILD_CPU.findall(text):
            # ... and its own CPU time (getrusage: exact). The benchmark file's
            # cpu_time then describes the waiting process only; without a warm
            # interpreter it is Snakemake's sample of the job's processes, taken
            # every 30 s after the first 15 s, so it may miss a job's last seconds.
            cpu = float(child[-1])
        work, units, extra = work_from_log(rule, log, wall)
        if rule == "train_model":
            units *= n_train
        elif rule == "compute_robustness_metrics":
            units *= metric_points
        jobs.append(Job(rule, wall, work, units, rss, str(relative), extra, cpu, clock))
    return jobs


# --------------------------------------------------------------------------- the run


def slice_config(args) -> dict:
    """configs/paper002_cifar10.yaml with the slice's reductions."""
    import yaml

    config = yaml.safe_load(PAPER_CONFIG.read_text())
    config["dataset"] = {"name": "cifar10", "path": str(Path(args.cifar).resolve()),
                         "verify": False}  # the shared copy is rebuilt (../shared/data/README.md)
    if args.train != "all":
        config["dataset"]["subset"] = {"train": int(args.train)}
    for regime in config["regimes"].values():
        regime["epochs"] = int(args.epochs)
    config["attack_subset_size"] = "all" if args.attacked == "all" else int(args.attacked)
    config["robustness_metrics"]["n_points"] = int(args.metric_points)
    config.setdefault("evaluation", {})["batch_size"] = int(args.eval_batch)
    if args.attack_batch:
        for spec in config["attacks"].values():
            spec["batch_size"] = int(args.attack_batch)
    return config


def targets(config: dict, split: int = 0) -> list[str]:
    base = "results/cifar10/lenet5/{regime}/split{split}/{name}"
    return [base.format(regime=regime, split=split, name=name)
            for regime in config["regimes"] for name in ("accuracy.csv",
                                                         "robustness_metrics.csv")]


def run(args) -> tuple[Path, float, dict]:
    import yaml

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="advfit-paper-scale-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = slice_config(args)
    configfile = workdir / "paper002_slice.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    env["ADVFIT_WARM"] = "1" if args.warm else "0"
    snakemake = Path(sys.executable).with_name("snakemake")
    argv = [str(snakemake), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(configfile), "--cores", str(args.cores), *targets(config)]
    print(f"  config: {configfile}\n  running: {' '.join(argv)}", flush=True)
    wall, cpu, _ = run_snakemake(argv, workdir, env)
    return workdir, wall, cpu


def n_train_of(args) -> int:
    if args.train == "all":
        return FULL["n_train"]
    return int(int(args.train) * (FULL["splits"] - 1) / FULL["splits"])


def report(jobs: list[Job], args, wall: float, cpu: dict, info: dict) -> dict:
    """Print the slice's jobs and the extrapolations; write the CSVs. Returns the main one."""
    crafts = [j for j in jobs if j.rule == "craft_adversarial_set"]
    correct = [j.extra["correct_at_best"] for j in crafts if "correct_at_best" in j.extra]
    slice_fraction = (sum(correct) / len(correct) / FULL["n_test"]) if correct else 1.0
    estimates = {"every test image attacked (upper bound)": float(args.full_attacked)}
    if correct:
        estimates[f"attacked = the slice's accuracy at M ({slice_fraction:.3f})"] = (
            slice_fraction * FULL["n_test"])
    clocks = [args.clock] + [c for c in ("cpu", "wall") if c != args.clock]
    results = {}
    for label, n in estimates.items():
        for clock in clocks:
            results[(clock, label)] = extrapolate([replace(j, clock=clock) for j in jobs], n,
                                                  args.cores)

    print(f"\nmeasured slice (split 0, {len(jobs)} jobs, --cores {args.cores}, "
          f"{'model jobs in the warm interpreter' if args.warm else 'every job in its own process'}"
          f"): wall {wall:.0f} s; others used {cpu['foreign_share']:.0%} of the machine")
    print(f"  {'job':<58} {'wall s':>7} {'CPU s':>7} {'work s':>7} {'units':>9} {'peak RSS MiB':>12}")
    for job in jobs:
        print(f"  {job.name:<58} {job.wall_s:7.1f} {job.cpu_s:7.1f} {job.work_s:7.1f} "
              f"{job.units:9.0f} {job.max_rss_mb:12.0f}  {job.extra or ''}")
    print("  (work s: the part that grows with the protocol, from the log's timestamps; "
          "units: epochs x images, points, snapshots x samples, snapshots x points)")
    for (clock, label), result in results.items():
        what = ("job cost = its CPU time (a core of its own; the jobs run one thread)"
                if clock == "cpu" else "job cost = its wall time on this shared machine")
        print(f"\nextrapolated to the whole protocol: {label}, {result['n_correct']:.0f} attacked "
              f"per attack and run; {what}:")
        if clock == args.clock:
            print(f"  {'rule':<28} {'jobs':>5} {'s per job':>10} {'total s':>10} {'total h':>8}")
            for rule, r in result["rules"].items():
                print(f"  {rule:<28} {r['jobs_full']:5d} {r['per_job_full_s']:10.0f} "
                      f"{r['total_full_s']:10.0f} {r['total_full_s'] / 3600:8.2f}")
        dominant = max(result["rules"].items(), key=lambda kv: kv[1]["total_full_s"])
        print(f"  job time {result['cpu_total_s'] / 3600:.2f} h; longest split x regime chain "
              f"{result['chain_s'] / 3600:.2f} h; wall on {args.cores} cores "
              f"~{result['wall_s'] / 3600:.2f} h (target <= 8 h: "
              f"{'met' if result['wall_s'] <= 8 * 3600 else 'NOT met'}); dominated by "
              f"{dominant[0]} ({dominant[1]['total_full_s'] / result['cpu_total_s']:.0%})")
    print("  not in the slice, not in the estimate: the 9 aggregation jobs (tables, tests, "
          "figures) of the protocol's 82")

    rows = []
    for (clock, label), result in results.items():
        for rule, r in result["rules"].items():
            rows.append({"clock": clock, "estimate": label, "rule": rule,
                         **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}})
        rows.append({"clock": clock, "estimate": label, "rule": "TOTAL",
                     "total_full_s": round(result["cpu_total_s"], 1),
                     "wall_full_s": round(result["wall_s"], 1),
                     "chain_full_s": round(result["chain_s"], 1)})
    info.update({k: str(v) for k, v in cpu.items()})
    info.update({"slice_wall_s": f"{wall:.1f}", "epochs": str(args.epochs),
                 "train": str(args.train), "attacked": str(args.attacked),
                 "metric_points": str(args.metric_points), "cores": str(args.cores),
                 "warm": str(args.warm), "clock": args.clock, "eval_batch": str(args.eval_batch),
                 "attack_batch": str(args.attack_batch)})
    print(f"CPU used by others while measuring: {cpu['foreign_share']} of the machine "
          f"({cpu['cpu_foreign_s']} s; ours {cpu['cpu_ours_s']} s)")
    write_csv("paper_scale", rows, info)
    write_csv("paper_scale_jobs", [{"job": j.name, "rule": j.rule, "wall_s": round(j.wall_s, 2),
                                    "cpu_s": j.cpu_s, "work_s": round(j.work_s, 2),
                                    "units": j.units, "max_rss_mb": j.max_rss_mb, **j.extra}
                                   for j in jobs])
    return results[(args.clock, next(iter(estimates)))]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (>= 2; paper 35)")
    parser.add_argument("--train", default="all",
                        help="CIFAR-10 training images before the 5-fold split (default all)")
    parser.add_argument("--attacked", default="100",
                        help="attack_subset_size (an integer, or all as in the paper)")
    parser.add_argument("--metric-points", type=int, default=10,
                        help="robustness_metrics.n_points (paper config 100)")
    parser.add_argument("--full-attacked", type=float, default=FULL["n_test"],
                        help="attacked points per attack and run in the full protocol "
                             "(default 10000, an upper bound)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--eval-batch", type=int, default=1024,
                        help="evaluation.batch_size (config: 1024; larger on a GPU)")
    parser.add_argument("--attack-batch", type=int, default=0,
                        help="batch_size of every attack (default: the attacks' own)")
    parser.add_argument("--no-warm", dest="warm", action="store_false",
                        help="run every model job in its own process (ADVFIT_WARM=0); by "
                             "default they run in the warm interpreter, as in a local run, "
                             "and their logs give their exact CPU time and peak RSS")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="the main estimate's job cost: CPU time (default; a core of "
                             "its own per job) or wall time (on a GPU, whose work the CPU "
                             "time does not show); the other is printed too")
    parser.add_argument("--cifar", default=str(CIFAR))
    parser.add_argument("--workdir", default=None, help="run here (default: a fresh temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S")
    parser.add_argument("--from-workdir", action="store_true",
                        help="do not run: read the jobs of a finished --workdir again")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the steady epoch is timed between two epochs")
    if not Path(args.cifar).is_dir():
        sys.exit(f"no CIFAR-10 at {args.cifar}: this benchmark needs the real data")

    load = wait_for_quiet(max_wait_s=args.wait_quiet)
    info = machine()
    info["load_at_start"] = f"{load:.2f}"
    print_machine(info)
    if args.from_workdir:
        workdir, wall, cpu = Path(args.workdir), float("nan"), {
            "foreign_share": float("nan"), "cpu_foreign_s": float("nan"),
            "cpu_ours_s": float("nan")}
    else:
        workdir, wall, cpu = run(args)
    jobs = read_jobs(workdir, n_train_of(args), args.metric_points, clock="cpu")
    report(jobs, args, wall, cpu, info)
    if not (args.keep or args.workdir):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept {workdir}")


if __name__ == "__main__":
    main()
