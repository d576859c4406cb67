"""Shared fixtures: the repository root, the default config, a tiny trained model."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_snakemake(workdir: Path, *args: str, config: dict | None = None,
                  timeout: int = 900) -> subprocess.CompletedProcess:
    """Run this checkout's workflow in ``workdir`` with ``workdir/config.yaml``."""
    if config is not None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
         "--cores", "2", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run_workflow_once(tmp_path_factory, name: str, config: dict) -> Path:
    """A module fixture's body: the workflow run to the end on ``config`` in a
    fresh folder named ``name``, which is returned; a failed run fails the fixture."""
    workdir = tmp_path_factory.mktemp(name)
    done = run_snakemake(workdir, config=config)
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture()
def default_config() -> dict:
    return copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))


@pytest.fixture(scope="session")
def digits():
    from advfit.data.datasets import PooledData, load_dataset

    return PooledData(load_dataset("digits"))


@pytest.fixture(scope="session")
def trained_lenet(digits, tmp_path_factory):
    """LeNet-5 trained 3 epochs on the digits training part, with its snapshots."""
    from advfit import runtime

    runtime.configure(2, seed=0)
    from advfit.models.architectures import build_model
    from advfit.models.training import train_regime

    snapshot_dir = tmp_path_factory.mktemp("snapshots")
    model = build_model("lenet5", digits.x.shape[1:], 10)
    regime = {"optimizer": "adam", "learning_rate": 3e-3, "batch_size": 32, "epochs": 3}
    train = digits.take(digits.official_train[:1000])
    validation = digits.take(digits.official_train[1000:])
    test = digits.take(digits.official_test)
    history = train_regime(model, regime, train, validation, test, snapshot_dir)
    from advfit.runtime.snapshot_folder import write_manifest

    write_manifest(snapshot_dir, regime["epochs"])  # sealed, as train_model seals its folder
    return model, history, snapshot_dir


@pytest.fixture(scope="module")
def last_lenet(trained_lenet):
    """The trained LeNet at its last snapshot, reloaded per module (others load others)."""
    model, _, snapshot_dir = trained_lenet
    model.load_weights(snapshot_dir / "epoch_003.weights.h5")
    return model


def correctly_classified(model, digits, n: int):
    """The first ``n`` test images ``model`` classifies correctly, and their labels."""
    from advfit.attacks.adversarial_sets import predict_labels

    x, y = digits.take(digits.official_test)
    keep = np.flatnonzero(predict_labels(model, x) == y)[:n]
    assert len(keep) == n
    return x[keep], y[keep]


def perturbation_sizes(x_adv, x, norm):
    """Per image, the L-inf (norm "inf") or L2 size of ``x_adv - x``."""
    flat = (x_adv - x).reshape(len(x), -1)
    return np.abs(flat).max(axis=1) if norm == "inf" else np.linalg.norm(flat, axis=1)


def robust_accuracy(model, x_adv, y) -> float:
    from advfit.attacks.adversarial_sets import predict_labels

    return float((predict_labels(model, x_adv) == y).mean())


def kill_and_resume(tmp_path: Path, driver_source: str, epochs: int) -> tuple[Path, Path]:
    """The kill-and-resume harness of the training tests. ``driver_source`` is a
    script that trains ``epochs`` epochs into the folder given as its argument
    (snapshots, one state file, ``<folder>.log`` and ``<folder>.history.csv``).
    It runs once whole; once SIGKILLed as soon as epoch 2's state exists, then
    rerun to the end. Asserts that the kill came early enough to matter, that
    only the latest state was kept, that the rerun said it resumed after the
    saved epoch, and that it left exactly one weights file per epoch. Returns
    (whole, killed) for the caller's comparisons."""
    driver = tmp_path / "driver.py"
    driver.write_text(driver_source)
    run = [sys.executable, str(driver)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*run, str(whole)], check=True, timeout=300, env=env)

    proc = subprocess.Popen([*run, str(killed)], env=env)
    deadline = time.monotonic() + 240
    while not (killed / "epoch_002.state.npz").exists():
        assert proc.poll() is None, "training ended before epoch 2 was saved"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in killed.iterdir() if not p.name.startswith("."))
    assert f"epoch_{epochs:03d}.weights.h5" not in left, "killed too late to test anything"
    states = [n for n in left if n.endswith(".state.npz")]
    assert len(states) == 1, left  # only the latest state is kept
    saved = int(states[0][len("epoch_"):][:3])

    subprocess.run([*run, str(killed)], check=True, timeout=300, env=env)
    assert f"resuming after epoch {saved} of {epochs}" in Path(f"{killed}.log").read_text()
    assert sorted(p.name for p in killed.iterdir()) == [
        f"epoch_{e:03d}.weights.h5" for e in range(1, epochs + 1)]
    return whole, killed
