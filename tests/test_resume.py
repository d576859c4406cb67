"""Killed and resumed: training continues bit-identically from its last
complete epoch, and a whole run killed at any stage and resumed gives the very
same tables as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, kill_and_resume

# ---------------------------------------------------------------- training

DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path

    from advfit.jobs import job_log

    out = Path(sys.argv[1])
    with job_log(str(out) + ".log"):
        from advfit import runtime

        runtime.configure(1, seed=7)
        from advfit.data.datasets import PooledData, load_dataset
        from advfit.models.architectures import build_model
        from advfit.models.training import train_regime

        d = PooledData(load_dataset("digits"))
        train = d.take(d.official_train[:800])
        validation = d.take(d.official_train[800:1000])
        test = d.take(d.official_test)
        regime = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 6}
        model = build_model("lenet5", d.x.shape[1:], 10)
        history = train_regime(model, regime, train, validation, test, out,
                               seed=1234, resume=True)
        history.to_csv(str(out) + ".history.csv", index=False)
""")


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of a Keras weights file: the weights and the optimizer's variables."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def _same_snapshots(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        left, right = _h5_arrays(a / name), _h5_arrays(b / name)
        assert left.keys() == right.keys() and left, name
        for key in left:
            assert left[key].dtype == right[key].dtype and np.array_equal(left[key], right[key]), \
                (name, key)


def test_training_killed_after_an_epoch_resumes_bit_identically(tmp_path):
    whole, killed = kill_and_resume(tmp_path, DRIVER, epochs=6)
    # equal to the uninterrupted run's: every weight and optimizer variable, the history
    _same_snapshots(whole, killed)
    assert Path(f"{killed}.history.csv").read_bytes() == Path(f"{whole}.history.csv").read_bytes()


@pytest.fixture(scope="module")
def small_digits():
    from advfit import runtime

    runtime.configure(1, seed=0)
    from advfit.data.datasets import PooledData, load_dataset

    d = PooledData(load_dataset("digits"))
    return d, d.take(d.official_train[:300]), d.take(d.official_train[300:400]), d.take(d.official_test[:100])


def _train(small_digits, directory, regime, **kwargs):
    from advfit.models.architectures import build_model
    from advfit.models.training import train_regime

    d, train, validation, test = small_digits
    model = build_model("lenet5", d.x.shape[1:], 10)
    history = train_regime(model, regime, train, validation, test, directory, **kwargs)
    return model, history


ADAM = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 3}


def test_the_optimizer_state_matters_to_the_resume(small_digits, tmp_path):
    """Resuming without Adam's moments (what restoring only the weights would
    do) does not reproduce the run: the comparison above can tell."""
    from advfit.runtime.io import load_npz, save_npz
    from advfit.runtime.layout import state_name

    _train(small_digits, tmp_path / "whole", ADAM, seed=5)
    _train(small_digits, tmp_path / "cut", ADAM, seed=5, stop_after=1)
    state_path = tmp_path / "cut" / state_name(1)
    state = load_npz(state_path)
    meta = json.loads(str(state["meta"]))
    moments = [i for i, p in enumerate(meta["optimizer"]) if "momentum" in p or "velocity" in p]
    assert moments
    save_npz(state_path, **{k: (np.zeros_like(v) if k in {f"optimizer_{i}" for i in moments} else v)
                            for k, v in state.items()})
    _train(small_digits, tmp_path / "cut", ADAM, seed=5, resume=True)
    last = "epoch_003.weights.h5"
    assert not all(np.array_equal(a, b) for a, b in zip(
        _h5_arrays(tmp_path / "whole" / last).values(), _h5_arrays(tmp_path / "cut" / last).values()))


def test_a_changed_regime_or_seed_starts_afresh_and_fewer_epochs_reuse(small_digits, tmp_path, caplog):
    import logging

    from advfit.runtime.layout import snapshot_name

    caplog.set_level(logging.INFO, logger="advfit")
    directory = tmp_path / "run"
    _train(small_digits, directory, ADAM, seed=5, stop_after=2)
    caplog.clear()
    _train(small_digits, directory, {**ADAM, "learning_rate": 0.02}, seed=5, resume=True,
           stop_after=2)
    assert "resuming" not in caplog.text and "another regime" in caplog.text
    caplog.clear()
    _train(small_digits, directory, {**ADAM, "learning_rate": 0.02}, seed=6, resume=True,
           stop_after=2)
    assert "resuming" not in caplog.text
    # The state after epoch 2 also holds a 1-epoch run of the same regime and seed.
    caplog.clear()
    _, history = _train(small_digits, directory, {**ADAM, "learning_rate": 0.02, "epochs": 1},
                        seed=6, resume=True)
    assert "resuming after epoch 1 of 1" in caplog.text
    assert history.epoch.tolist() == [1]
    assert sorted(p.name for p in directory.iterdir()) == [snapshot_name(1)]


# ---------------------------------------------------------------- whole runs

TINY = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32,
                            "epochs": 4}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fgsm": {"eps": 0.1}},
    "attack_subset_size": 40,
}
TABLES = ["accuracy.csv", "accuracy_summary.csv", "best_snapshots.csv", "adversarial_sets.csv",
          "distances.csv", "distances_summary.csv"]
# The tables are the targets: figures and later analyses would only add time.
TARGETS = [f"results/tables/{table}" for table in TABLES]


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", "2", *args]


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(_snakemake(workdir, *args), capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _run_and_kill(workdir: Path, ready, what: str) -> None:
    """Start the (resumed) run, SIGKILL snakemake and all its jobs when ``ready()``."""
    proc = subprocess.Popen(_snakemake(workdir, "--rerun-incomplete", *TARGETS),
                            start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not ready():
            assert proc.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"no {what} after 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for _ in range(100):  # wait until every job of the group is gone
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def _first(workdir: Path, pattern: str) -> list[Path]:
    return list(workdir.glob(pattern))


def _attack_running(workdir: Path) -> bool:
    for log in workdir.glob("results/logs/digits/lenet5/*/split*/craft_adversarial_set_*.log"):
        attack = log.stem.removeprefix("craft_adversarial_set_")
        run = Path(str(log.parent).replace("/results/logs/", "/results/"))
        if not (run / "adversarial" / f"{attack}.npz").exists() and log.stat().st_size > 0:
            return True
    return False


@pytest.mark.e2e
def test_a_run_killed_at_every_stage_resumes_to_the_same_tables(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for workdir in (reference, killed):
        workdir.mkdir()
        (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    started = time.monotonic()
    _run(reference, *TARGETS)
    print(f"reference run: {time.monotonic() - started:.1f} s")

    runs = "results/digits/lenet5/overfit/split*"
    stages = [
        ("training", lambda: _first(killed, f"{runs}/snapshots.partial/epoch_*.state.npz")),
        ("an attack", lambda: _attack_running(killed)),
        ("aggregation", lambda: _first(killed, "results/tables/*.csv")),
    ]
    for what, ready in stages:
        started = time.monotonic()
        _run_and_kill(killed, ready, what)
        print(f"killed during {what} after {time.monotonic() - started:.1f} s")
        # A hard kill leaves snakemake's lock behind: the documented resume
        # unlocks first, then reruns with --rerun-incomplete.
        _run(killed, "--unlock")
        if what == "training":
            partial = _first(killed, f"{runs}/snapshots.partial")
            assert partial, "the kill left no partial training to resume"

    started = time.monotonic()
    _run(killed, "--rerun-incomplete", *TARGETS)
    print(f"last resume: {time.monotonic() - started:.1f} s")
    assert "Nothing to be done" in _run(killed, "--dry-run", *TARGETS).stdout
    resumed = [p for p in killed.glob("results/logs/digits/lenet5/overfit/split*/train_model.log")
               if "resuming after epoch" in p.read_text()]
    assert resumed, "no training resumed from a partial run"
    for table in TABLES:
        assert (killed / "results/tables" / table).read_bytes() == \
            (reference / "results/tables" / table).read_bytes(), table
    leftovers = [p for p in (killed / "results").rglob("*")
                 if ".tmp" in p.name or p.name.endswith(".partial") or p.name.endswith(".state.npz")]
    assert leftovers == []
