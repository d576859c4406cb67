"""A training run's snapshot folder: self-describing, written by one job at a time.

Everything downstream reads the snapshot folder, so it must never be trusted
half-written or mixed from two writers. Three guards:

- **a manifest**, ``manifest.json``, written last (after every epoch's weights,
  inside the staging folder that is renamed into place): every epoch 1..E with
  its file's size and SHA-256. A folder without it, with an epoch missing or a
  file it does not list, is refused by :func:`open_snapshots` with a message
  naming the folder; each snapshot's SHA-256 is checked when it is first read.
- **an exclusive lock per training job** (:func:`exclusive`), an advisory
  ``flock`` held while the job writes its staging folder and renames it: a
  second writer of the same job (two ``snakemake`` runs on one results folder,
  e.g. after ``--unlock`` under a live run) fails at once with a message,
  instead of interleaving epochs with the first.
- **adoption** of a folder made before manifests existed
  (``python -m advfit.runtime.snapshot_folder adopt RUN_FOLDER``): only when its
  files are exactly the epochs of the run's ``history.csv``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from advfit.runtime.io import file_sha256, load_json, save_json
from advfit.runtime.layout import epoch_of, list_snapshots, list_states

MANIFEST = "manifest.json"
FORMAT = "advfit-snapshots-1"


class SnapshotFolderError(RuntimeError):
    """A snapshot folder that cannot be trusted; the message names it and says why."""


class ConcurrentWriterError(RuntimeError):
    """Another process holds the lock of a job's output."""


# --- the manifest ------------------------------------------------------------------------


def manifest_entries(folder: Path, epochs: int) -> dict[str, dict]:
    """Every epoch 1..``epochs`` of ``folder``, with its size and SHA-256; an epoch
    missing is an error (the folder is not the complete run)."""
    snapshots = list_snapshots(folder)
    missing = [e for e in range(1, epochs + 1) if e not in snapshots]
    if missing:
        raise SnapshotFolderError(
            f"snapshot folder {folder}: epochs {_ranges(missing)} of 1..{epochs} are missing; "
            f"refusing to declare it complete")
    return {str(e): {"file": snapshots[e].name, "bytes": snapshots[e].stat().st_size,
                     "sha256": file_sha256(snapshots[e])} for e in range(1, epochs + 1)}


def write_manifest(folder, epochs: int, **record) -> Path:
    """Write ``folder``'s manifest (atomically): its last file, the mark of a complete run."""
    folder = Path(folder)
    manifest = {"format": FORMAT, "epochs": int(epochs),
                "snapshots": manifest_entries(folder, int(epochs)), **record}
    save_json(folder / MANIFEST, manifest)
    return folder / MANIFEST


def publish(staging, final, epochs: int, **record) -> None:
    """Seal ``staging`` with its manifest and rename it to ``final`` (replacing it).

    Training state files and stray temporary files are left out of the folder
    consumers read; a snapshot of an epoch past ``epochs`` is an error."""
    staging, final = Path(staging), Path(final)
    extra = [e for e in list_snapshots(staging) if e > epochs]
    if extra:
        raise SnapshotFolderError(f"snapshot folder {staging}: epochs {_ranges(extra)} are past "
                                  f"the run's last epoch {epochs}")
    for path in list_states(staging).values():
        path.unlink()
    write_manifest(staging, epochs, **record)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


# --- reading -----------------------------------------------------------------------------


class Snapshots(Mapping):
    """Epoch -> snapshot path of a complete snapshot folder, epochs ascending.

    Looking an epoch up checks its file against the manifest's SHA-256 (once per
    epoch), so a snapshot replaced or damaged after training is never loaded."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.manifest = manifest
        self._entries = {int(e): v for e, v in manifest["snapshots"].items()}
        self._checked: set[int] = set()

    def __getitem__(self, epoch: int) -> Path:
        entry = self._entries[int(epoch)]
        path = self.folder / entry["file"]
        if epoch not in self._checked:
            actual = file_sha256(path) if path.is_file() else "no file"
            if actual != entry["sha256"]:
                raise SnapshotFolderError(
                    f"snapshot {path}: SHA-256 {actual} differs from the manifest's "
                    f"{entry['sha256']}; the folder was changed after training. Delete "
                    f"{self.folder} and rerun to retrain it")
            self._checked.add(int(epoch))
        return path

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def open_snapshots(folder) -> Snapshots:
    """The snapshots of a complete folder, or :class:`SnapshotFolderError` saying what is
    wrong: no manifest, an epoch missing, a file of another size, a file not listed."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise SnapshotFolderError(f"snapshot folder {folder} does not exist")
    if not manifest_path.is_file():
        raise SnapshotFolderError(
            f"snapshot folder {folder} has no {MANIFEST}: it is incomplete (a training job "
            f"that did not finish, or two runs writing it at once) or was made before "
            f"advfit wrote manifests. Delete it and rerun to retrain, or, if it is an older "
            f"complete run, adopt it: python -m advfit.runtime.snapshot_folder adopt "
            f"{folder.parent}")
    try:
        manifest = load_json(manifest_path)
        epochs = int(manifest["epochs"])
        entries = {int(e): v for e, v in manifest["snapshots"].items()}
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotFolderError(f"{manifest_path}: not a snapshot manifest ({error})") from None
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
    if sorted(entries) != list(range(1, epochs + 1)):
        problems.append(f"lists epochs {_ranges(sorted(entries))}, not 1..{epochs}")
    on_disk = list_snapshots(folder)
    missing = [e for e in entries if e not in on_disk]
    if missing:
        problems.append(f"epochs {_ranges(missing)} are listed but their files are missing")
    unlisted = [e for e in on_disk if e not in entries]
    if unlisted:
        problems.append(f"files of epochs {_ranges(unlisted)} are not listed")
    resized = [e for e in entries if e in on_disk
               and on_disk[e].stat().st_size != entries[e]["bytes"]]
    if resized:
        problems.append(f"files of epochs {_ranges(resized)} differ in size from the manifest")
    if problems:
        raise SnapshotFolderError(f"snapshot folder {folder} is not the complete run its "
                                  f"manifest describes: {'; '.join(problems)}. Delete it "
                                  f"and rerun to retrain it")
    return Snapshots(folder, manifest)


# --- one writer per job ------------------------------------------------------------------


@contextlib.contextmanager
def exclusive(lock_path, what: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` while writing ``what``.

    A second process (or job) asking for the same lock fails at once with
    :class:`ConcurrentWriterError` naming the holder. The lock dies with its
    process, so a killed job never leaves it held; the empty lock file stays."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            raise ConcurrentWriterError(
                f"{what} is being written right now by another job ({holder}; lock "
                f"{lock_path}). Two snakemake runs are working on the same results: let the "
                f"first one finish. `snakemake --unlock` is only for a run that is dead") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


# --- folders from before manifests -------------------------------------------------------


def adopt(run_folder) -> Path:
    """Write the manifest of ``run_folder/snapshots`` made by an advfit without manifests,
    if its snapshot files are exactly the epochs of ``run_folder/history.csv``."""
    import pandas as pd

    run_folder = Path(run_folder)
    folder, history = run_folder / "snapshots", run_folder / "history.csv"
    if (folder / MANIFEST).is_file():
        raise SnapshotFolderError(f"{folder} already has a manifest")
    if not history.is_file():
        raise SnapshotFolderError(f"{history} not found: cannot tell which epochs {folder} "
                                  f"should hold")
    epochs = [int(e) for e in pd.read_csv(history)["epoch"]]
    if epochs != list(range(1, len(epochs) + 1)):
        raise SnapshotFolderError(f"{history}: epochs are not 1..{len(epochs)}")
    stray = [p.name for p in folder.iterdir() if epoch_of(p.name) is None]
    found = list(list_snapshots(folder))
    if found != epochs or stray:
        raise SnapshotFolderError(
            f"{folder} holds epochs {_ranges(found) or 'none'}"
            + (f" and other files ({', '.join(sorted(stray))})" if stray else "")
            + f"; {history} has 1..{len(epochs)}: not adopted, delete it and rerun")
    return write_manifest(folder, len(epochs), adopted=True)


def _ranges(epochs) -> str:
    """1, 2, 3, 5 -> '1-3, 5'."""
    epochs, parts, i = sorted(epochs), [], 0
    while i < len(epochs):
        j = i
        while j + 1 < len(epochs) and epochs[j + 1] == epochs[j] + 1:
            j += 1
        parts.append(str(epochs[i]) if i == j else f"{epochs[i]}-{epochs[j]}")
        i = j + 1
    return ", ".join(parts)


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "adopt":
        print("usage: python -m advfit.runtime.snapshot_folder adopt RUN_FOLDER", file=sys.stderr)
        return 2
    try:
        print(f"wrote {adopt(argv[1])}")
    except SnapshotFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


__all__ = ["MANIFEST", "ConcurrentWriterError", "SnapshotFolderError", "Snapshots", "adopt",
           "exclusive", "open_snapshots", "publish", "write_manifest"]
