"""Atomic writes leave nothing behind on failure; npz never unpickles."""

import numpy as np
import pytest

from advfit.runtime.io import array_to_meta, atomic_path, load_npz, meta_to_array, save_npz


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target, suffix=".npz") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_npz_round_trip_with_metadata(tmp_path):
    meta = {"attack": "fgsm", "params": {"eps": 0.3}, "best_epoch": 7}
    save_npz(tmp_path / "a.npz", x=np.arange(6).reshape(2, 3), meta=meta_to_array(meta))
    data = load_npz(tmp_path / "a.npz")
    assert data["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert array_to_meta(data["meta"]) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_object_arrays_are_not_unpickled(tmp_path):
    np.savez(tmp_path / "evil.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_npz(tmp_path / "evil.npz")


def test_read_table_keeps_text_and_reads_empty_cells_as_nan(tmp_path):
    import pandas as pd

    from advfit.runtime.io import read_table, save_csv

    frame = pd.DataFrame({"eval_set": ["test", "adversarial"], "attack": ["none", "fgsm"],
                          "n": [10, 0], "accuracy": [0.5, float("nan")]})
    save_csv(tmp_path / "t.csv", frame)
    table = read_table(tmp_path / "t.csv")
    assert table.attack.tolist() == ["none", "fgsm"]
    assert table.accuracy.iloc[0] == 0.5 and np.isnan(table.accuracy.iloc[1])
    assert table.n.dtype.kind == "i"


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    import os

    from advfit.runtime.io import save_json

    old = os.umask(0o022)
    try:
        save_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        save_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # readable by collaborators
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600  # the umask still rules
