"""Exact K-nearest-neighbour classification of flattened images (experiment KNN).

One neighbour search serves every K: the Z nearest training neighbours of each
query are found once, and the K-NN vote for K = 1, 3, ..., Z reads the first K
of them.

Two algorithms give identical results, distance ties included:
- ``brute`` (default, fast): squared distances by a matrix product, used only
  to shortlist candidates with a rigorous rounding-error bound, then re-ranked
  exactly.
- ``kd_tree`` (the paper's): scipy's exact ``cKDTree``, whose candidates are
  re-ranked the same way. In 784 dimensions a KD-tree prunes almost nothing,
  so it is much slower than ``brute``; it is kept to check the paper's set-up.

Tie rules (deterministic, the same for both algorithms):
- neighbours: ordered by (exact squared distance, training index); at equal
  distance the smaller training index comes first. The exact distance is the
  float64 sum of squared float64 differences of the flattened inputs, always
  computed by the one function ``pair_sq_distances``, so that both algorithms
  compare the very same numbers.
- votes: ``"nearest"`` (default) gives a tie between classes to the tied class
  whose nearest member comes first in the neighbour order (the K-NN falls back
  on the nearest neighbour among the tied classes; no class is favoured).
  ``"smallest_label"`` gives it to the smallest label, as scikit-learn's
  ``KNeighborsClassifier`` does (whose neighbour order at equal distance is,
  however, unspecified).

Querying the training set itself finds every training point as its own
nearest neighbour (distance 0), as ``KNeighborsClassifier.score`` does: that is
what makes the 1-NN fit its training set perfectly, the over-fitting end of
the trade-off.

Memory is bounded by ``batch_size``: at most ``batch_size`` x N_train
distances exist at a time, never N_query x N_train.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from advfit.runtime.layout import NO_ATTACK

ALGORITHMS = ("brute", "kd_tree")
VOTE_TIES = ("nearest", "smallest_label")
DEFAULT_BATCH_SIZE = 256

# Relative error allowed between the KD-tree's float64 distances and the exact
# ones. Both are float64 sums of the same non-negative squares, which differ
# by at most d * 2**-53 relative (about 1e-13 for d = 3072); 1e-9 is a margin
# of safety, not a tolerance that changes which neighbours are returned.
_KD_RELATIVE_SLACK = 1e-9
# Query/candidate pairs whose exact distance is computed at once (bounds the
# float64 difference array to _PAIR_CHUNK x d values).
_PAIR_CHUNK = 8192


def odd_ks(z: int) -> list[int]:
    """K = 1, 3, ..., Z for an odd Z >= 1."""
    if int(z) != z or z < 1 or z % 2 == 0:
        raise ValueError(f"Z must be an odd integer >= 1, got {z!r}")
    return list(range(1, int(z) + 1, 2))


def flatten(x: np.ndarray) -> np.ndarray:
    """Samples as C-contiguous rows; float32 stays float32, anything else is float64."""
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    n_features = int(np.prod(x.shape[1:]))  # explicit: reshape(0, -1) is ambiguous
    return np.ascontiguousarray(x.reshape(len(x), n_features), dtype=dtype)


def pair_sq_distances(x_query: np.ndarray, x_train: np.ndarray,
                      query_rows: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """Exact squared distance of each (query_rows[i], train_rows[i]) pair, float64.

    The one definition of distance that orders neighbours. Differences of
    float32 inputs in [0, 1] are exact in float64, and each row is summed by
    the same numpy reduction whatever the batch or the algorithm, so both
    algorithms compare bit-identical values.
    """
    out = np.empty(len(query_rows), dtype=np.float64)
    for start in range(0, len(query_rows), _PAIR_CHUNK):
        stop = start + _PAIR_CHUNK
        diff = x_query[query_rows[start:stop]].astype(np.float64)
        diff -= x_train[train_rows[start:stop]]
        diff *= diff
        out[start:stop] = diff.sum(axis=1)
    return out


def _gamma(n: int, unit_roundoff: float) -> float:
    """Higham's gamma_n: the relative error bound of an n-term floating-point sum."""
    return n * unit_roundoff / (1.0 - n * unit_roundoff)


@contextlib.contextmanager
def _blas_threads(n_jobs: int | None):
    """Limit BLAS threads to n_jobs (None: leave as is; -1: all cores)."""
    if n_jobs is None or n_jobs == -1:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(n_jobs), user_api="blas"):
        yield


class NeighbourIndex:
    """A training set ready to be queried; built once, queried for every evaluation set.

    ``query`` returns the n nearest neighbours of each query under the
    (distance, index) order: exact squared distances (float64) and training
    indices, both of shape (n_query, n).
    """

    def __init__(self, x_train: np.ndarray, algorithm: str = "brute", n_jobs: int | None = 1,
                 gemm_dtype=None):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}; known: {ALGORITHMS}")
        self.x_train = flatten(x_train)
        if len(self.x_train) == 0:
            raise ValueError("the training set is empty")
        self.algorithm = algorithm
        self.n_jobs = n_jobs
        # Queries whose shortlist could miss a neighbour and took the slow,
        # still exact, path (a diagnostic for benchmarks).
        self.n_slow_queries = 0
        if algorithm == "kd_tree":
            from scipy.spatial import cKDTree

            # cKDTree works in float64 (a float64 copy of the training set). In
            # high dimension it prunes little; large leaves scan contiguously,
            # about 25 % faster on MNIST than the default of 16.
            self._tree = cKDTree(self.x_train, leafsize=256)
        else:
            # The product runs in the inputs' precision unless told otherwise:
            # float32 is twice as fast, and its larger rounding error only
            # widens the shortlist that is then re-ranked exactly.
            self._gemm_dtype = np.dtype(gemm_dtype or self.x_train.dtype)
            self._train_gemm = self.x_train.astype(self._gemm_dtype, copy=False)
            sq_norms = np.einsum("ij,ij->i", self.x_train, self.x_train, dtype=np.float64)
            self._train_sq_norms_gemm = sq_norms.astype(self._gemm_dtype)
            self._train_max_norm = float(np.sqrt(sq_norms.max()))

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    def query(self, x_query: np.ndarray, n_neighbours: int, batch_size: int = DEFAULT_BATCH_SIZE,
              margin: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and indices of the ``n_neighbours`` nearest training points.

        ``margin`` extra candidates are shortlisted per query (default n) so
        that ties and rounding at the boundary rarely need the slow path.
        """
        x_query = flatten(x_query)
        if x_query.shape[1] != self.x_train.shape[1]:
            raise ValueError(f"queries have {x_query.shape[1]} features, "
                             f"the training set {self.x_train.shape[1]}")
        n = int(n_neighbours)
        if not 1 <= n <= self.n_train:
            raise ValueError(f"need 1 <= n_neighbours <= {self.n_train}, got {n_neighbours!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        n_candidates = min(n + (n if margin is None else int(margin)), self.n_train)
        sq_dist = np.empty((len(x_query), n), dtype=np.float64)
        index = np.empty((len(x_query), n), dtype=np.int64)
        search = self._brute_batch if self.algorithm == "brute" else self._kd_batch
        with _blas_threads(self.n_jobs if self.algorithm == "brute" else None):
            for start in range(0, len(x_query), batch_size):
                rows = slice(start, min(start + batch_size, len(x_query)))
                sq_dist[rows], index[rows] = search(x_query[rows], n, n_candidates)
        return sq_dist, index

    # -- exact re-ranking, shared by both algorithms -------------------------------

    def _rerank(self, x_query: np.ndarray, candidates: np.ndarray, n: int):
        """First n of each row's candidates under the (exact distance, index) order."""
        b, c = candidates.shape
        query_rows = np.repeat(np.arange(b), c)
        exact = pair_sq_distances(x_query, self.x_train, query_rows, candidates.ravel())
        exact = exact.reshape(b, c)
        order = np.lexsort((candidates, exact), axis=1)[:, :n]
        return np.take_along_axis(exact, order, axis=1), np.take_along_axis(candidates, order, axis=1)

    def _rerank_one(self, query: np.ndarray, candidates: np.ndarray, n: int):
        dist, idx = self._rerank(query[np.newaxis], candidates[np.newaxis], n)
        return dist[0], idx[0]

    # -- brute force ----------------------------------------------------------------

    def _error_bound(self, query_norms: np.ndarray) -> np.ndarray:
        """Bound on |approximate - exact| of ``_approximate`` per query row.

        In precision u (Higham's bounds): the product q.t errs by at most
        gamma_{d+2} |q| |t| (d products and sums, plus rounding float64 inputs
        to float32), rounding |t|^2 and the final subtraction add at most
        gamma_4 (|t|^2 + 2 |q.t|); with 2 |q| |t| <= (|q| + |t|)^2 both fit in
        gamma_{d+6} (|q| + max |t|)^2. The exact distances that decide the
        order are float64 sums themselves, off the real ones by at most
        gamma_{d+1}(2**-53) |q - t|^2, a term added for safety.
        """
        d = self.x_train.shape[1]
        unit = float(np.finfo(self._gemm_dtype).eps) / 2
        scale = (query_norms + self._train_max_norm) ** 2
        return (_gamma(d + 6, unit) + _gamma(d + 1, 2.0**-53)) * scale

    def _approximate(self, x_query: np.ndarray) -> np.ndarray:
        """|t|^2 - 2 q.t for every training point t: the squared distance minus |q|^2.

        The per-query constant |q|^2 does not change the ranking, so it is left
        out. Computed in place in the product's precision: one batch x N array.
        """
        approx = x_query.astype(self._gemm_dtype, copy=False) @ self._train_gemm.T
        approx *= -2
        approx += self._train_sq_norms_gemm
        return approx

    def _brute_batch(self, x_query: np.ndarray, n: int, n_candidates: int):
        approx = self._approximate(x_query)
        query_norms = np.sqrt(np.einsum("ij,ij->i", x_query, x_query, dtype=np.float64))
        # Every true neighbour j has approx_j <= (n-th smallest approx) + 2 * bound:
        # the n-th exact distance is at most the n-th approximate one plus the
        # bound, and a neighbour's approximate distance exceeds its exact one by
        # at most the bound. The shortlist of n_candidates is complete when the
        # smallest approximate distance left out is above that threshold.
        reach = 2 * self._error_bound(query_norms)
        if n_candidates == self.n_train:
            shortlist = np.broadcast_to(np.arange(self.n_train), approx.shape)
            return self._rerank(x_query, np.ascontiguousarray(shortlist), n)
        part = np.argpartition(approx, n_candidates, axis=1)
        shortlist = part[:, :n_candidates]
        first_left_out = np.take_along_axis(approx, part[:, n_candidates:n_candidates + 1], axis=1)[:, 0]
        nth = np.partition(np.take_along_axis(approx, shortlist, axis=1), n - 1, axis=1)[:, n - 1]
        threshold = nth + reach
        dist, idx = self._rerank(x_query, shortlist, n)
        for row in np.flatnonzero(first_left_out <= threshold):
            # Rare: exact ties or near ties beyond the shortlist (duplicates).
            candidates = np.flatnonzero(approx[row] <= threshold[row])
            self.n_slow_queries += 1
            dist[row], idx[row] = self._rerank_one(x_query[row], candidates, n)
        return dist, idx

    # -- KD-tree ----------------------------------------------------------------------

    def _kd_batch(self, x_query: np.ndarray, n: int, n_candidates: int):
        workers = -1 if self.n_jobs in (None, -1) else int(self.n_jobs)
        tree_dist, shortlist = self._tree.query(x_query, k=n_candidates, workers=workers)
        shortlist = np.asarray(shortlist, dtype=np.int64).reshape(len(x_query), n_candidates)
        tree_dist = np.asarray(tree_dist, dtype=np.float64).reshape(len(x_query), n_candidates)
        dist, idx = self._rerank(x_query, shortlist, n)
        if n_candidates == self.n_train:
            return dist, idx
        # The tree returns the n_candidates nearest by its own float64 distances:
        # every point left out is at least as far as the last one returned. The
        # shortlist is complete when the n-th exact distance (with slack) is
        # strictly closer than that, otherwise a ball query collects every tie.
        reach = dist[:, n - 1] * (1 + _KD_RELATIVE_SLACK)
        for row in np.flatnonzero(reach >= tree_dist[:, -1] ** 2 * (1 - _KD_RELATIVE_SLACK)):
            radius = math.sqrt(reach[row]) * (1 + _KD_RELATIVE_SLACK)
            candidates = np.asarray(self._tree.query_ball_point(x_query[row], radius), dtype=np.int64)
            self.n_slow_queries += 1
            dist[row], idx[row] = self._rerank_one(x_query[row], candidates, n)
        return dist, idx


def nearest_neighbours(x_train: np.ndarray, x_query: np.ndarray, n_neighbours: int,
                       algorithm: str = "brute", batch_size: int = DEFAULT_BATCH_SIZE,
                       n_jobs: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared distances and training indices of the nearest neighbours."""
    index = NeighbourIndex(x_train, algorithm, n_jobs)
    return index.query(x_query, n_neighbours, batch_size)


def vote(neighbour_codes: np.ndarray, ks, n_classes: int, tie: str = "nearest") -> dict[int, np.ndarray]:
    """Majority class code among the first K neighbours, for every K in ``ks``.

    ``neighbour_codes`` (n_query, >= max K) holds class codes 0..n_classes-1
    in neighbour order. Ties between classes follow ``tie`` (module docstring).
    """
    if tie not in VOTE_TIES:
        raise ValueError(f"unknown vote tie rule {tie!r}; known: {VOTE_TIES}")
    n_query, z = neighbour_codes.shape
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1 or max(ks) > z:
        raise ValueError(f"every K must lie in 1..{z}, got {ks}")
    one_hot = neighbour_codes[:, :, np.newaxis] == np.arange(n_classes)
    counts = np.cumsum(one_hot, axis=1, dtype=np.int32)  # counts[:, K-1, c]: votes of c among K
    if tie == "nearest":
        # Position of each class's nearest member (z when absent). Encoding
        # count * (z + 1) + (z - position) makes argmax pick the largest count,
        # then the class met first; positions are distinct, so no tie is left.
        position = np.where(one_hot.any(axis=1), one_hot.argmax(axis=1), z)
        tiebreak = (z - position).astype(np.int32)
        return {k: np.argmax(counts[:, k - 1, :] * (z + 1) + tiebreak, axis=1) for k in ks}
    # np.argmax returns the first maximum: the smallest label wins a tie.
    return {k: np.argmax(counts[:, k - 1, :], axis=1) for k in ks}


def knn_predict_all_k(x_train: np.ndarray, y_train: np.ndarray, x_query: np.ndarray, ks,
                      algorithm: str = "brute", batch_size: int = DEFAULT_BATCH_SIZE,
                      n_jobs: int | None = 1, vote_tie: str = "nearest",
                      index: NeighbourIndex | None = None) -> dict[int, np.ndarray]:
    """Predicted labels of the K-NN for every K in ``ks``, from one neighbour search.

    To score several evaluation sets against one training set, concatenate
    them into ``x_query`` (one search) or pass a prebuilt ``index``.
    """
    ks = sorted({int(k) for k in ks})
    y_train = np.asarray(y_train)
    if len(y_train) != len(x_train):
        raise ValueError(f"{len(x_train)} training samples but {len(y_train)} labels")
    if index is None:
        index = NeighbourIndex(x_train, algorithm, n_jobs)
    classes, codes = np.unique(y_train, return_inverse=True)
    x_query = flatten(x_query)
    predictions = {k: np.empty(len(x_query), dtype=y_train.dtype) for k in ks}
    if len(x_query) == 0:
        return predictions
    # Neighbours and votes batch by batch, so that memory stays bounded.
    for start in range(0, len(x_query), batch_size):
        rows = slice(start, start + batch_size)
        _, neighbours = index.query(x_query[rows], max(ks), batch_size)
        for k, code in vote(codes[neighbours], ks, len(classes), vote_tie).items():
            predictions[k][rows] = classes[code]
    return predictions


# -- accuracy and the evaluation sets of experiment KNN ----------------------------------

def accuracy_by_k(predictions: dict[int, np.ndarray], y: np.ndarray) -> dict[int, float]:
    """Accuracy of each K's predictions; NaN for an empty set, never a crash."""
    y = np.asarray(y)
    return {k: float(np.mean(pred == y)) if len(y) else float("nan")
            for k, pred in sorted(predictions.items())}


def accuracy_rows(predictions: dict[int, np.ndarray], y: np.ndarray, eval_set: str,
                  attack: str = NO_ATTACK, positions=None) -> list[dict]:
    """Tidy rows (k, eval_set, attack, n, n_correct, accuracy) of one evaluation set.

    ``positions`` (a slice or index array) picks the set's samples out of
    predictions made on concatenated sets; ``y`` holds that set's labels.
    """
    y = np.asarray(y)
    rows = []
    for k, pred in sorted(predictions.items()):
        part = pred if positions is None else pred[positions]
        if len(part) != len(y):
            raise ValueError(f"{len(part)} predictions for {len(y)} labels in {eval_set}")
        n_correct = int(np.sum(part == y))
        rows.append({"k": k, "eval_set": eval_set, "attack": attack, "n": len(y),
                     "n_correct": n_correct, "accuracy": n_correct / len(y) if len(y) else float("nan")})
    return rows


def attack_sources(predicted_z: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Positions of the test samples the Z-NN classifies correctly (what gets attacked)."""
    return np.flatnonzero(np.asarray(predicted_z) == np.asarray(y_test))


def fail_subset(predicted_z: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Positions of the test samples the Z-NN misclassifies: the fail subset."""
    return np.flatnonzero(np.asarray(predicted_z) != np.asarray(y_test))


def filter_adversarial_set(x_adv: np.ndarray, y_adv: np.ndarray, source_index: np.ndarray,
                           predicted_z: np.ndarray) -> dict[str, np.ndarray]:
    """Keep only the AEs that the Z-NN misclassifies: the K-NN adversarial set.

    The AEs are crafted elsewhere (on a CNN); ``predicted_z`` is the Z-NN's
    prediction for each of them and ``y_adv`` their true labels. ``keep``
    holds the kept positions, so that predictions already made for every K
    on all AEs can be subset instead of searched again. The Z-NN accuracy on
    the result is 0 by construction.
    """
    y_adv = np.asarray(y_adv)
    n = len(y_adv)
    if not len(x_adv) == len(source_index) == len(predicted_z) == n:
        raise ValueError("x_adv, y_adv, source_index and predicted_z must have one length")
    keep = np.flatnonzero(np.asarray(predicted_z) != y_adv)
    return {
        "x": np.asarray(x_adv)[keep],
        "y": y_adv[keep],
        "source_index": np.asarray(source_index)[keep],
        "predicted": np.asarray(predicted_z)[keep],
        "keep": keep,
        "n_tried": np.int64(n),
        "n_kept": np.int64(len(keep)),
    }
