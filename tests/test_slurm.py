"""The Slurm profile on a real one-node Slurm (.ci/slurm.sh): every job runs as
a Slurm job, the model jobs with a GPU request and the others without."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SLURM_SH = ROOT / ".ci" / "slurm.sh"
GPU_RULES = {"train_model", "craft_adversarial_set", "evaluate_snapshots",
             "craft_knn_adversarial_set", "attack_snapshots", "evaluate_transfer_matrix",
             "attack_validation_snapshots", "compute_robustness_curves",
             "check_gradient_masking", "compute_robustness_metrics"}
TINY = {
    "seed": 5,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32,
                            "epochs": 2}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fgsm": {"eps": 0.1}},
    "attack_subset_size": 30,
}


def test_a_fake_gpu_slot_runs_on_the_cpu_with_a_warning(tmp_path):
    """What a GPU job gets on a node whose GPU TensorFlow cannot use."""
    log = tmp_path / "job.log"
    script = textwrap.dedent(f"""
        from advfit.jobs import job_log
        with job_log({str(log)!r}):
            from advfit import runtime
            print("device:", runtime.configure(1, seed=0))
    """)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=env)
    text = log.read_text()
    assert "a GPU was assigned (CUDA_VISIBLE_DEVICES=0) but TensorFlow sees no usable GPU" in text
    assert re.search(r"INFO TensorFlow \S+ on CPU \(1 threads\)", text)
    assert "device: CPU (1 threads)" in text


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node Slurm; stopped afterwards if this fixture started it."""
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="snakemake-executor-plugin-slurm not installed (pip install -e '.[slurm]')")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld and slurmd needs root")
    state = tmp_path_factory.mktemp("slurm")
    try:
        started = subprocess.run(["bash", str(SLURM_SH), "start", str(state)],
                                 capture_output=True, text=True, timeout=600)
        if started.returncode == 2:
            pytest.skip(f"no Slurm here: {started.stderr.strip()}")
        assert started.returncode == 0, started.stderr
        yield state
    finally:
        # Stop by PID whatever happened (the daemons detach from this process).
        subprocess.run(["bash", str(SLURM_SH), "stop", str(state)], timeout=120)


# Rules that share a Slurm job with GPU rules (the profile's groups): same partition.
GROUP_MATES = {entry.split("=")[0] for entry in yaml.safe_load(
    (ROOT / "profiles/slurm/config.yaml").read_text())["groups"]} - GPU_RULES


def _test_profile(directory: Path) -> Path:
    """profiles/slurm as shipped, but for this tiny cluster: status from squeue
    (no accounting database), quick first status check, kept Slurm logs, small
    memory requests, no retries (a failure must show); and partitions set as
    the README tells: `gpu` for the GPU rules and their group mates, `main`
    for the rest."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    profile.update({
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 1,
        "slurm-keep-successful-logs": True,
        "retries": 0,
        "latency-wait": 5,
    })
    profile["default-resources"].update(mem_mb=500, slurm_partition="main")
    for rule in GPU_RULES | GROUP_MATES:
        profile["set-resources"].setdefault(rule, {})["slurm_partition"] = "gpu"
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 1000
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump(profile))
    return directory


def _rule_jobs(text: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job block in a snakemake log."""
    jobs = set()
    for match in re.finditer(r"^( *)(?:local)?rule (\w+):\n((?:\1    .*\n)*)", text, re.M):
        wildcards = re.search(r"^ *wildcards: (.*)$", match.group(3), re.M)
        jobs.add((match.group(2), wildcards.group(1) if wildcards else ""))
    return jobs


@pytest.mark.e2e
def test_every_job_runs_as_a_slurm_job_and_model_jobs_ask_for_a_gpu(slurm, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    profile = _test_profile(tmp_path / "profile")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
         "--profile", str(profile), "--verbose"],
        # ~3 min on 2 idle cores; every Slurm job step imports TensorFlow afresh (no
        # warm interpreters under Slurm), so a loaded machine needs far longer.
        capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-8000:]
    assert (workdir / "results/tables/accuracy.csv").exists()

    # Every sbatch call: GPU rules (alone or in their group) with --gpus=1, others without.
    calls = re.findall(r"sbatch call: (sbatch .*)", out)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert calls and len(calls) == len(submitted)
    for call in calls:
        comment = re.search(r"--comment (\S+)", call).group(1)
        if any(rule in comment for rule in GPU_RULES):
            assert " --gpus=1" in call and "--cpus-per-task=1" in call, call
            assert " -p gpu " in call, call
        else:
            assert "--gpus" not in call and "--gres" not in call, call
            assert " -p main " in call, call
    grouped = [c for c in calls if "cnn_run" in c]
    assert len(grouped) == TINY["splits"]["n_splits"]  # one Slurm job per split x regime

    # Slurm's own record of the same jobs: all completed, GPU ones holding gres/gpu.
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id,
                            "--Format=JobID:12,State:14,Partition:10,tres-per-job:16,Comment:200"],
                           capture_output=True, text=True, check=True).stdout
    records = {line.split()[0]: line.split() for line in queue.splitlines() if line.strip()}
    assert set(records) == set(submitted)
    for job_id, (_, state, partition, tres, comment) in records.items():
        assert state == "COMPLETED", records[job_id]
        gpu = any(rule in comment for rule in GPU_RULES)
        assert (tres == "gres:gpu:1") == gpu and (partition == "gpu") == gpu, records[job_id]

    # Every job of the workflow (but the target rule `all`) ran inside a Slurm
    # job: its block is in a Slurm job's log.
    planned = _rule_jobs(out) - {("all", "")}
    logs = list((workdir / ".snakemake/slurm_logs").rglob("*.log"))
    assert len(logs) == len(submitted)
    in_slurm = set().union(*(_rule_jobs(p.read_text()) for p in logs))
    assert planned and planned <= in_slurm, planned - in_slurm

    # Inside the GPU jobs Slurm set CUDA_VISIBLE_DEVICES to a fake GPU's index:
    # each says so, runs on the CPU, and logs its device.
    job_logs = list((workdir / "results/logs").rglob("*.log"))
    gpu_logs = [p for p in job_logs if any(p.name.startswith(rule) for rule in GPU_RULES)]
    assert len(gpu_logs) == 3 * TINY["splits"]["n_splits"]
    for path in gpu_logs:
        text = path.read_text()
        assert re.search(r"a GPU was assigned \(CUDA_VISIBLE_DEVICES=[01]\) but TensorFlow sees "
                         r"no usable GPU: running on the CPU", text), path
        assert re.search(r"INFO TensorFlow \S+ on CPU", text), path
