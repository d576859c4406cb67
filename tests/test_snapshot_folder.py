"""The snapshot folder: sealed by a manifest, refused when incomplete, written by one job.

Issue 25's silent loss: `snakemake --unlock` and the same command again while
the first run was still training left a snapshot folder with only some
epochs, and downstream jobs used it. Now a second writer of a training job
fails at once, and every consumer refuses a folder its manifest does not
describe."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

from advfit.runtime.snapshot_folder import (MANIFEST, ConcurrentWriterError, SnapshotFolderError,
                                            adopt, exclusive, open_snapshots, publish)


@pytest.fixture()
def sealed(trained_lenet, tmp_path) -> Path:
    """A copy of the 3-epoch LeNet's sealed snapshot folder."""
    _, _, snapshot_dir = trained_lenet
    folder = tmp_path / "snapshots"
    shutil.copytree(snapshot_dir, folder)
    return folder


def test_a_sealed_folder_lists_every_epoch_and_checks_each_file_on_reading(sealed):
    snapshots = open_snapshots(sealed)
    assert list(snapshots) == [1, 2, 3] and len(snapshots) == 3
    assert snapshots[2] == sealed / "epoch_002.weights.h5"
    manifest = yaml.safe_load((sealed / MANIFEST).read_text())
    assert manifest["epochs"] == 3 and set(manifest["snapshots"]) == {"1", "2", "3"}


def test_a_folder_without_manifest_is_refused_naming_it_and_the_way_out(sealed):
    (sealed / MANIFEST).unlink()
    with pytest.raises(SnapshotFolderError, match=f"{sealed} has no manifest.json.*adopt"):
        open_snapshots(sealed)


def test_a_missing_epoch_is_refused(sealed):
    (sealed / "epoch_002.weights.h5").unlink()
    with pytest.raises(SnapshotFolderError, match="epochs 2 are listed but their files are missing"):
        open_snapshots(sealed)


def test_an_unlisted_epoch_is_refused(sealed):
    shutil.copy(sealed / "epoch_003.weights.h5", sealed / "epoch_004.weights.h5")
    with pytest.raises(SnapshotFolderError, match="files of epochs 4 are not listed"):
        open_snapshots(sealed)


def test_a_snapshot_changed_after_training_is_refused_when_read(sealed):
    # Same size, other bytes: only the checksum can tell.
    shutil.copy(sealed / "epoch_001.weights.h5", sealed / "epoch_002.weights.h5")
    snapshots = open_snapshots(sealed)
    assert snapshots[1].is_file()
    with pytest.raises(SnapshotFolderError, match="epoch_002.weights.h5: SHA-256 .* differs"):
        snapshots[2]


def test_publish_refuses_an_incomplete_staging_folder(sealed, tmp_path):
    (sealed / MANIFEST).unlink()
    (sealed / "epoch_001.weights.h5").unlink()
    final = tmp_path / "final"
    with pytest.raises(SnapshotFolderError, match=r"epochs 1 of 1..3 are missing"):
        publish(sealed, final, 3)
    assert not final.exists()


def test_publish_seals_renames_and_drops_training_states(sealed, tmp_path):
    (sealed / MANIFEST).unlink()
    (sealed / "epoch_003.state.npz").write_bytes(b"state")
    final = tmp_path / "final"
    final.mkdir()
    (final / "stale").write_text("an older folder is replaced whole")
    publish(sealed, final, 3, seed=1)
    assert not sealed.exists()
    assert sorted(p.name for p in final.iterdir()) == [
        "epoch_001.weights.h5", "epoch_002.weights.h5", "epoch_003.weights.h5", MANIFEST]
    assert list(open_snapshots(final)) == [1, 2, 3]


def test_adopt_accepts_exactly_the_epochs_of_the_history(sealed, trained_lenet):
    _, history, _ = trained_lenet
    run = sealed.parent
    history.to_csv(run / "history.csv", index=False)
    (sealed / MANIFEST).unlink()
    moved = sealed / "epoch_003.weights.h5"
    moved.rename(run / "aside.h5")
    with pytest.raises(SnapshotFolderError, match="holds epochs 1-2; .* has 1..3: not adopted"):
        adopt(run)
    (run / "aside.h5").rename(moved)
    done = subprocess.run([sys.executable, "-m", "advfit.runtime.snapshot_folder", "adopt",
                           str(run)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(open_snapshots(sealed)) == [1, 2, 3]
    assert open_snapshots(sealed).manifest["adopted"] is True


HOLDER = textwrap.dedent("""
    import sys, time
    from advfit.runtime.snapshot_folder import exclusive
    with exclusive(sys.argv[1], "the folder"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    lock = tmp_path / ".snapshots.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(ConcurrentWriterError, match=f"pid {holder.pid} on .*--unlock` is only"):
            with exclusive(lock, "the folder"):
                pass
        assert time.monotonic() - started < 5  # refused, not waited for
    finally:
        holder.kill()
        holder.wait()
    with exclusive(lock, "the folder"):  # a dead holder's lock is gone with it
        pass


# ---------------------------------------------------------------- the command sequence

CONFIG = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {"normal": {"optimizer": "sgd", "learning_rate": 0.01, "batch_size": 32,
                           "epochs": 6}},
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fgsm": {"eps": 0.1}},
    "attack_subset_size": 40,
}
RUN = "results/digits/lenet5/normal/split0"
TARGET = f"{RUN}/adversarial/fgsm.npz"  # crafting reads the snapshot folder


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", "1", *args]


def _training_pid(workdir: Path) -> int:
    """The process training split 0, as its lock file names it."""
    lock = workdir / RUN / ".snapshots.lock"
    deadline = time.monotonic() + 300
    while not (lock.is_file() and lock.read_text().startswith("pid ")):
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    return int(lock.read_text().split()[1])


@pytest.mark.e2e
def test_unlock_under_a_live_run_and_rerun_loses_no_snapshot(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(_snakemake(tmp_path, TARGET), start_new_session=True, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Pause the first run's training after its first epoch (the process only, so
    # its warm interpreter still serves): the second run then surely meets it.
    training = None
    try:
        while not (tmp_path / RUN / "snapshots.partial" / "epoch_001.weights.h5").exists():
            assert first.poll() is None, first.stdout.read()[-3000:]
            time.sleep(0.02)
        training = _training_pid(tmp_path)
        os.kill(training, signal.SIGSTOP)
        # The sequence: unlock under a live run, then the same command again.
        unlock = subprocess.run(_snakemake(tmp_path, "--unlock"), capture_output=True,
                                text=True, timeout=300, env=env)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        second = subprocess.run(_snakemake(tmp_path, TARGET), capture_output=True, text=True,
                                timeout=600, env=env)
        os.kill(training, signal.SIGCONT)
        output, _ = first.communicate(timeout=600)
    finally:
        if training is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(training, signal.SIGCONT)
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    log = (tmp_path / "results/logs/digits/lenet5/normal/split0/train_model.log").read_text()
    # The second writer failed at once, naming the cause; the first one finished.
    assert second.returncode != 0
    assert "is being written right now by another job" in log, log[-3000:]
    assert first.returncode == 0, output[-3000:]
    # The folder is the complete run: every epoch, each file as sealed.
    snapshots = open_snapshots(tmp_path / RUN / "snapshots")
    assert list(snapshots) == list(range(1, 7))
    for epoch in snapshots:
        assert snapshots[epoch].is_file()  # checksum checked
    assert len((tmp_path / RUN / "history.csv").read_text().splitlines()) == 7
    assert (tmp_path / TARGET).is_file()
    assert not (tmp_path / RUN / "snapshots.partial").exists()
    # Nothing was lost that a later run would have to redo or could mistake.
    again = subprocess.run(_snakemake(tmp_path, "--dry-run", TARGET), capture_output=True,
                           text=True, timeout=300, env=env)
    assert "Nothing to be done" in again.stdout, again.stdout[-2000:]
