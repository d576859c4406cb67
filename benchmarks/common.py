"""Shared helpers of the benchmarks: the machine, the load, timing, CSV output.

Not a benchmark itself. Every benchmark prints its figures and writes a CSV
under ``benchmarks/out/`` (git-ignored) whose first rows describe the machine
and the load when it ran.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Where the CSVs go; ADVFIT_BENCH_OUT moves them (e.g. for a prototype's runs).
OUT = Path(os.environ.get("ADVFIT_BENCH_OUT") or REPO / "benchmarks" / "out")
QUIET_LOAD = 0.7


def loadavg() -> tuple[float, float, float]:
    return tuple(float(v) for v in Path("/proc/loadavg").read_text().split()[:3])


def wait_for_quiet(threshold: float = QUIET_LOAD, max_wait_s: float = 0.0, poll_s: float = 15.0) -> float:
    """Wait (at most ``max_wait_s``) until the 1-minute load is below ``threshold``.

    Returns the 1-minute load when the measurement starts; says so when it
    had to start on a busy machine.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        load = loadavg()[0]
        if load < threshold or time.monotonic() >= deadline:
            break
        print(f"  load {load:.2f} >= {threshold}: waiting ({deadline - time.monotonic():.0f} s left)",
              flush=True)
        time.sleep(poll_s)
    if load >= threshold:
        print(f"  WARNING: measuring on a busy machine (1-min load {load:.2f})", flush=True)
    return load


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, Python and the load right now."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "affinity_cpus": str(len(os.sched_getaffinity(0))),
        "cpu_model": model,
        "ram_gib": f"{mem_kib / 2**20:.1f}",
        "python": platform.python_version(),
        "loadavg_1_5_15": " ".join(f"{v:.2f}" for v in loadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def print_machine(info: dict[str, str]) -> None:
    print(f"machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['ram_gib']} GiB RAM, "
          f"Python {info['python']}; load {info['loadavg_1_5_15']}", flush=True)


def write_csv(name: str, rows: list[dict], info: dict[str, str] | None = None) -> Path:
    """Write ``rows`` (dicts, union of keys as columns) to benchmarks/out/<name>.csv.

    The machine description goes into a sibling ``<name>.machine.csv`` so that
    the main file stays a plain table.
    """
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.csv"
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    if info is not None:
        with open(OUT / f"{name}.machine.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["key", "value"])
            writer.writerows(info.items())
    print(f"wrote {path}", flush=True)
    return path


def python_exe() -> str:
    return sys.executable


def time_command(argv: list[str], repeat: int = 3, env: dict | None = None) -> list[float]:
    """Wall seconds of ``argv``, run ``repeat`` times (output discarded)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env)
        times.append(time.perf_counter() - start)
    return times


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def tf_threads(threads: int) -> None:
    """Pin TensorFlow's thread pools before anything starts its runtime."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def trained_lenet(seed: int = 0, epochs: int = 15):
    """One fixed LeNet-5 trained on digits' official training part, seeded.

    Adam (lr 1e-3), batch 32: about 97-98 % test accuracy. Returns
    ``(model, x_test, y_test)``; TensorFlow's threads must be set before.
    """
    import keras
    import numpy as np

    from advfit.data.datasets import load_digits
    from advfit.models.architectures import build_model
    from advfit.models.training import compile_model

    arrays = load_digits()
    keras.utils.set_random_seed(seed)
    model = build_model("lenet5", arrays["x_train"].shape[1:], 10)
    compile_model(model, {"optimizer": "adam", "learning_rate": 1e-3})
    model.fit(arrays["x_train"], arrays["y_train"], epochs=epochs, batch_size=32, verbose=0,
              shuffle=True)
    logits = model.predict(arrays["x_test"], batch_size=1024, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == arrays["y_test"]))
    print(f"trained LeNet-5 on digits ({epochs} epochs, seed {seed}): test accuracy {accuracy:.3f}",
          flush=True)
    return model, arrays["x_test"], arrays["y_test"]


def _busy_seconds() -> float:
    """CPU seconds spent busy (not idle or iowait) by the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuAccount:
    """How much CPU others used while we measured: machine busy time minus ours.

    ``ours`` is this process plus its waited-for descendants (os.times), so
    call ``stop`` after the measured subprocesses have exited. ``foreign_share``
    is the other users' CPU time over the capacity (nproc x wall): 0 on a
    quiet machine, 0.5 when someone else kept one of two cores busy.
    """

    def __init__(self) -> None:
        self.start_busy = _busy_seconds()
        t = os.times()
        self.start_ours = t.user + t.system + t.children_user + t.children_system
        self.start_wall = time.perf_counter()

    def stop(self, extra_ours: float = 0.0) -> dict:
        """``extra_ours``: CPU seconds of our processes that we do not wait for
        (a warm interpreter in its own session)."""
        wall = time.perf_counter() - self.start_wall
        busy = _busy_seconds() - self.start_busy
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system - self.start_ours
        ours += extra_ours
        foreign = max(busy - ours, 0.0)
        return {"cpu_busy_s": round(busy, 1), "cpu_ours_s": round(ours, 1),
                "cpu_foreign_s": round(foreign, 1),
                "foreign_share": round(foreign / (wall * (os.cpu_count() or 1)), 3)}


def micro_parser(doc: str) -> argparse.ArgumentParser:
    """The options every single-process benchmark takes."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (jobs use 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for the 1-minute load to drop below 0.7")
    return parser


def begin(args) -> tuple[dict, "CpuAccount"]:
    """Wait for a quiet machine (at most ``args.wait_quiet`` s), start the CPU
    account, print the machine description and pin TensorFlow's threads."""
    load = wait_for_quiet(max_wait_s=args.wait_quiet)
    account = CpuAccount()
    info = machine()
    info["load_at_start"] = f"{load:.2f}"
    print_machine(info)
    tf_threads(args.threads)
    return info, account


def finish(name: str, rows: list[dict], info: dict, account: "CpuAccount", threads: int) -> None:
    """Say how much CPU others used while we measured, and write the CSV."""
    info.update({k: str(v) for k, v in account.stop().items()})
    info["threads"] = str(threads)
    print(f"CPU used by others while measuring: {info['foreign_share']} of the machine "
          f"({info['cpu_foreign_s']} s; ours {info['cpu_ours_s']} s)")
    write_csv(name, rows, info)


def lenet_and_pool(n: int, seed: int):
    """:func:`trained_lenet` and ``n`` of its correctly classified test indices
    (a seeded sample, sorted): ``(model, x_test, y_test, pool)``."""
    import numpy as np

    model, x_test, y_test = trained_lenet(seed)
    predicted = np.argmax(model.predict(x_test, batch_size=1024, verbose=0), axis=1)
    correct = np.flatnonzero(predicted == y_test)
    pool = np.sort(np.random.default_rng(seed).choice(correct, size=min(n, len(correct)),
                                                      replace=False))
    return model, x_test, y_test, pool
