"""Warm interpreters (advfit.jobs.warm): jobs forked from a process with TensorFlow imported.

Real servers, real forks, real signals: a script file stands in for a rule
script (Snakemake runs ``python <script>``); its first lines call handoff().
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advfit.jobs import usage, warm

SCRIPT_HEAD = "from advfit.jobs.warm import handoff\nhandoff()\n"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ADVFIT_WARM", "SLURM_JOB_ID")}
    env.update({"ADVFIT_WARM_IDLE": "120", "PYTHONUNBUFFERED": "1", **extra})
    return env


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(SCRIPT_HEAD + body)
    return path


def _alive(pid: int) -> bool:
    """Running (a zombie whose parent has not reaped it yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _run(folder: Path, script: Path, env: dict | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, str(script)], cwd=folder, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def _report(folder: Path, script: Path, timeout: float = 120, **env):
    """Run the REPORT script; return the process and what the script saw."""
    out = folder / "report.json"
    done = subprocess.run([sys.executable, str(script), str(out)], cwd=folder, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done, json.loads(out.read_text())


REPORT = """
import json, os, sys
from advfit.jobs import warm
report = {"pid": os.getpid(), "in_worker": warm.IN_WORKER, "fallback": warm.FALLBACK_REASON,
          "cwd": os.getcwd(), "argv": sys.argv, "marker": os.environ.get("MARKER"),
          "tf_loaded": "tensorflow" in sys.modules}
print("stdout-line")
print("stderr-line", file=sys.stderr)
with open(sys.argv[1], "w") as handle:
    json.dump(report, handle)
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One working directory, hence one warm interpreter, for the module's tests."""
    path = tmp_path_factory.mktemp("warm")
    yield path
    warm.stop_servers(str(path))


def test_a_job_runs_in_a_forked_child_with_its_own_cwd_env_argv_and_streams(folder):
    script = _script(folder, "report", REPORT)
    out = folder / "report.json"
    done, report = _report(folder, script, timeout=300, MARKER="job-1")
    assert report["in_worker"] is True and report["fallback"] is None
    assert report["tf_loaded"] is True  # imported by the warm interpreter, not by the script
    assert report["cwd"] == str(folder) and report["argv"] == [str(script), str(out)]
    assert report["marker"] == "job-1"  # the job's environment, not the server's
    assert "stdout-line" in done.stdout and "stderr-line" in done.stderr
    # A second job is served by the same warm interpreter, in another child.
    _, report2 = _report(folder, script, MARKER="job-2")
    assert report2["marker"] == "job-2" and report2["pid"] != report["pid"]
    logs = list((folder / warm.STATE_DIR).glob("*.log"))
    assert len(logs) == 1 and logs[0].read_text().count("ready in") == 1


def test_exit_status_and_traceback_are_the_jobs(folder):
    failing = _script(folder, "failing", "raise ValueError('bad input named here')\n")
    done = _run(folder, failing)
    assert done.returncode == 1
    assert "ValueError: bad input named here" in done.stderr
    exiting = _script(folder, "exiting", "import sys\nsys.exit(3)\n")
    assert _run(folder, exiting).returncode == 3


def test_killing_the_jobs_process_kills_the_child(folder):
    marker = folder / "child.pid"
    script = _script(folder, "sleeper", f"""
import os, time
open({str(marker)!r}, "w").write(str(os.getpid()))
time.sleep(300)
""")
    job = subprocess.Popen([sys.executable, str(script)], cwd=folder, env=_env())
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(marker.read_text())
    assert child != job.pid
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    if not _wait_gone(child, 5):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the warm interpreter's child outlived the job's process by 5 s")


def test_a_child_killed_by_a_signal_fails_the_job(folder):
    script = _script(folder, "suicide", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    done = _run(folder, script)
    assert done.returncode == 128 + signal.SIGKILL
    assert "killed by signal 9" in done.stderr


def test_off_switch_and_fallback_run_the_script_in_the_jobs_process(tmp_path):
    script = _script(tmp_path, "report", REPORT)
    _, report = _report(tmp_path, script, ADVFIT_WARM="0")
    assert report["in_worker"] is False and report["fallback"] is None
    assert report["tf_loaded"] is False
    assert not (tmp_path / warm.STATE_DIR).exists()
    # A warm interpreter that cannot start: the job still runs, and says why.
    _, report = _report(tmp_path, script, ADVFIT_WARM_IDLE="not-a-number")
    assert report["in_worker"] is False
    assert "failed to start" in report["fallback"]


def test_off_by_default_under_slurm_unless_asked():
    assert warm.enabled({}) is True
    assert warm.enabled({"SLURM_JOB_ID": "12"}) is False
    assert warm.enabled({"SLURM_JOB_ID": "12", "ADVFIT_WARM": "1"}) is True
    assert warm.enabled({"ADVFIT_WARM": "off"}) is False


def test_the_key_follows_directory_code_and_import_environment(tmp_path):
    base = {"PATH": "/usr/bin", "TF_ENABLE_ONEDNN_OPTS": "0"}
    key = warm.server_key(str(tmp_path), base)
    assert key == warm.server_key(str(tmp_path), {**base, "CUDA_VISIBLE_DEVICES": "1",
                                                   "SNAKEMAKE_X": "y", "PATH": "/bin"})
    assert key != warm.server_key(str(tmp_path), {**base, "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert key != warm.server_key(str(tmp_path), {**base, "PYTHONPATH": "/elsewhere"})
    assert key != warm.server_key(str(tmp_path / "other"), base)


def test_stop_ends_the_warm_interpreter(tmp_path):
    script = _script(tmp_path, "noop", "pass\n")
    assert _run(tmp_path, script).returncode == 0
    record = next((tmp_path / warm.STATE_DIR).glob("*.json"))
    pid = json.loads(record.read_text())["pid"]
    assert warm.stop_servers(str(tmp_path)) == 1
    assert _wait_gone(pid, 10), "the warm interpreter did not exit when asked to stop"
    assert not record.exists()


BUSY = """
from advfit.jobs import job_log
with job_log("results/logs/demo/busy.log"):
    import numpy as np
    a = np.random.default_rng(0).random((256, 256))
    for _ in range(300):
        a = np.tanh(a @ a)
"""
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def _snakemake_benchmark(folder: Path) -> Path:
    """What Snakemake writes after the job: the waiting process's small figures."""
    tsv = folder / "results/benchmarks/demo/busy.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text(HEADER + "\n4.00\t0:00:04\t31.50\t120.00\t20.00\t22.00\t0.00\t0.01\t1.00\t0.04\n")
    return tsv


def test_benchmark_files_get_the_childs_own_figures(folder):
    script = _script(folder, "busy", BUSY)
    done = _run(folder, script, timeout=300)
    assert done.returncode == 0, done.stderr
    log_text = (folder / "results/logs/demo/busy.log").read_text()
    assert "warm interpreter child: peak RSS" in log_text
    records = list((folder / usage.USAGE_DIR).glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    tsv = _snakemake_benchmark(folder)
    assert usage.correct_benchmarks(str(folder)) == 1
    assert not list((folder / usage.USAGE_DIR).glob("*.json"))  # consumed
    header, row = tsv.read_text().splitlines()
    row = dict(zip(header.split("\t"), row.split("\t")))
    assert row["s"] == "4.00" and row["h:m:s"] == "0:00:04"  # the wall time stays Snakemake's
    assert float(row["cpu_time"]) == pytest.approx(record["cpu_time"], abs=0.01)
    assert float(row["cpu_time"]) > 0.2  # the matrix products ran in the child
    assert float(row["max_rss"]) > 200  # TensorFlow and the rest are mapped in the child
    assert float(row["mean_load"]) == pytest.approx(100 * record["cpu_time"] / 4, abs=0.01)
    assert row["max_vms"] == row["max_uss"] == row["max_pss"] == "NA"


def test_benchmark_correction_leaves_other_runs_files_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warm, "IN_WORKER", True)
    usage.record_usage("results/logs/demo/busy.log")
    usage.record_usage("elsewhere/busy.log")  # not a rule log: no record
    assert len(list((tmp_path / usage.USAGE_DIR).glob("*.json"))) == 1
    tsv = _snakemake_benchmark(tmp_path)
    later = time.time() + 2 * usage.BENCHMARK_WINDOW_S  # rewritten by a later run, cold
    os.utime(tsv, (later, later))
    before = tsv.read_text()
    assert usage.correct_benchmarks(str(tmp_path)) == 0 and tsv.read_text() == before
    assert not list((tmp_path / usage.USAGE_DIR).glob("*.json"))
    assert usage.benchmark_path("results/logs/a/b/train_model.log") == (
        "results/benchmarks/a/b/train_model.tsv")
    # one of many studies, and advfit as a module under a host's prefix
    assert usage.benchmark_path("results/studies/mnist/logs/a/train_model.log") == (
        "results/studies/mnist/benchmarks/a/train_model.tsv")
    assert usage.benchmark_path("host/advfit/results/logs/a/train_model.log") == (
        "host/advfit/results/benchmarks/a/train_model.tsv")
    assert usage.benchmark_path("results/logs/a.txt") is None
    monkeypatch.setattr(warm, "IN_WORKER", False)  # a job in its own process records nothing
    usage.record_usage("results/logs/demo/busy.log")
    assert not list((tmp_path / usage.USAGE_DIR).glob("*.json"))


def test_every_benchmarked_rule_keeps_its_log_and_benchmark_side_by_side():
    """correct_benchmarks finds a job's benchmark file from its log path."""
    import re

    rules = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    constants = dict(re.findall(r'^(\w+_(?:LOG|BENCH)) = "([^"]+)"', (rules / "common.smk")
                                .read_text(), re.M))
    assert {"RUN_LOG", "RUN_BENCH", "KNN_LOG", "KNN_BENCH"} <= set(constants)

    def fill(pattern):
        return re.sub(r"\{(\w+_(?:LOG|BENCH))\}", lambda m: constants[m.group(1)], pattern)

    found = 0
    for smk in rules.glob("*.smk"):
        for block in re.split(r"\nrule ", smk.read_text()):
            bench = re.search(r'benchmark:\n\s+f?"([^"]+)"', block)
            if not bench:
                continue
            log = re.search(r'log:\n\s+f?"([^"]+)"', block)
            assert log, f"{smk.name}: a rule with benchmark but no log"
            assert usage.benchmark_path(fill(log.group(1))) == fill(bench.group(1)), (
                block.split("\n")[0])
            found += 1
    assert found >= 8
