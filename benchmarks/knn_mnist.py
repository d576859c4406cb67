"""Benchmark: exact K-NN (K = 1, 3, ..., Z) on MNIST with both algorithms.

Loads MNIST from four IDX .gz files, runs the brute-force search on the full
60000 x 784 training set and 10000 test queries, and the KD-tree on the same
training set with a subset of the queries (a KD-tree prunes almost nothing in
784 dimensions: its time grows linearly with the queries, so the subset's time
extrapolates). Prints wall time, peak memory, accuracy per K and whether the
two algorithms agree (same neighbours, same predictions) on the common queries.

    python benchmarks/knn_mnist.py [--data DIR] [--z 7] [--kd-queries 500] [--n-jobs 2]

Each algorithm runs in its own process so that its peak memory (ru_maxrss)
is its own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path("/work/shared/data/mnist")


def read_idx_images(path: Path) -> np.ndarray:
    """IDX3 images as float32 in [0, 1], one flattened row per image (16-byte header)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)
    return (pixels.reshape(n, rows * cols).astype(np.float32) / np.float32(255.0))


def read_idx_labels(path: Path) -> np.ndarray:
    """IDX1 labels as int64 (8-byte header)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)


def load_mnist(data: Path):
    return (read_idx_images(data / "train-images-idx3-ubyte.gz"),
            read_idx_labels(data / "train-labels-idx1-ubyte.gz"),
            read_idx_images(data / "t10k-images-idx3-ubyte.gz"),
            read_idx_labels(data / "t10k-labels-idx1-ubyte.gz"))


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(args_dict: dict, queue) -> None:
    """One algorithm in a fresh process: time, peak memory, neighbours, accuracy per K."""
    from advfit.knn.neighbours import NeighbourIndex, accuracy_by_k, odd_ks, vote

    a = argparse.Namespace(**args_dict)
    x_train, y_train, x_test, y_test = load_mnist(Path(a.data))
    x_test, y_test = x_test[:a.n_queries], y_test[:a.n_queries]
    loaded_mib = peak_rss_mib()
    ks = odd_ks(a.z)
    start = time.perf_counter()
    index = NeighbourIndex(x_train, a.algorithm, a.n_jobs)
    built = time.perf_counter() - start
    _, neighbours = index.query(x_test, a.z, a.batch_size)
    elapsed = time.perf_counter() - start
    classes, codes = np.unique(y_train, return_inverse=True)
    predictions = {k: classes[c] for k, c in vote(codes[neighbours], ks, len(classes)).items()}
    queue.put({"algorithm": a.algorithm, "n_queries": len(x_test), "build_s": built,
               "total_s": elapsed, "slow_queries": index.n_slow_queries, "rss_after_load_mib": loaded_mib, "peak_rss_mib": peak_rss_mib(),
               "accuracy": accuracy_by_k(predictions, y_test), "neighbours": neighbours.tolist()})


def run(algorithm: str, n_queries: int, args) -> dict:
    queue = mp.get_context("spawn").SimpleQueue()
    proc = mp.get_context("spawn").Process(
        target=run_one, args=({**vars(args), "algorithm": algorithm, "n_queries": n_queries}, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--z", type=int, default=7)
    parser.add_argument("--queries", type=int, default=10000, help="brute-force test queries")
    parser.add_argument("--kd-queries", type=int, default=500,
                        help="KD-tree test queries (all 10000 take about 10 minutes on 2 cores)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)

    results = [run("brute", args.queries, args), run("kd_tree", args.kd_queries, args)]
    for r in results:
        per_query_ms = 1000 * r["total_s"] / r["n_queries"]
        print(f"{r['algorithm']:8s} queries {r['n_queries']:6d}  build {r['build_s']:7.1f} s  "
              f"total {r['total_s']:7.1f} s ({per_query_ms:.2f} ms/query, "
              f"10000 queries ~ {per_query_ms * 10:.0f} s)  "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB (after loading data {r['rss_after_load_mib']:.0f} MiB)  "
              f"slow-path queries {r['slow_queries']}")
        print("         accuracy per K: " + "  ".join(f"K={k}: {acc:.4f}" for k, acc in r["accuracy"].items()))
    brute, kd = results
    common = min(brute["n_queries"], kd["n_queries"])
    same = np.array_equal(np.asarray(brute["neighbours"])[:common], np.asarray(kd["neighbours"])[:common])
    print(f"kd_tree and brute agree on the first {common} queries (same neighbours in the same order): {same}")
    summary = {r["algorithm"]: {k: v for k, v in r.items() if k != "neighbours"} for r in results}
    summary["agree_on_common_queries"] = bool(same)
    print(json.dumps(summary))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
