"""Peak RSS of the data steps of prepare_dataset, make_splits and a model job, full CIFAR-10.

One step per process, measured from outside, e.g.

    for step in prepare splits model; do
        /usr/bin/time -v python benchmarks/prepared_data_rss.py $step /tmp/out 2>&1 |
            grep -E "Maximum resident|Elapsed"
    done

``prepare``: read CIFAR-10 and write the prepared file (as rule prepare_dataset);
``splits``: load it and make 5 k-fold splits (as make_splits); ``model``: that
and take the float32 images of split 0's train, validation and test parts (the
data loading of train_model). Runs the advfit it imports, so the same script
measures an older checkout (PYTHONPATH=old/src) that writes float32 files.
"""
import sys
from pathlib import Path

step, out = sys.argv[1], sys.argv[2]
CIFAR = sys.argv[3] if len(sys.argv) > 3 else str(
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-py")
from advfit.data import datasets
from advfit.runtime.io import load_npz, save_npz
new = hasattr(datasets, "load_prepared")
if step == "prepare":
    arrays = datasets.read_dataset({"name": "cifar10"}, CIFAR)
    if new:
        arrays = datasets.prepared_arrays(arrays)
    save_npz(out + "/data.npz", **arrays)
else:
    data = datasets.load_prepared(out + "/data.npz") if new else datasets.PooledData(load_npz(out + "/data.npz"))
    from advfit.data.splits import make_splits
    splits = make_splits(data, "kfold", 5, 0, 0.2)
    if step == "model":
        s = splits[0]
        parts = [data.take(s[k]) for k in ("train", "validation", "test")]
        print(sum(p[0].nbytes for p in parts) / 2**20, "MiB of float32 images taken")
