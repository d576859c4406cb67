"""Experiment KNN (paper 000 §4.1): K-NN accuracy against K on every set.

The K-NN of a split memorises the split's training samples, the very ones
its CNN was trained on (``memorise="train"``; with k-fold splits, train +
validation would be the same for every split), or its training and
validation samples (``"train_and_validation"``: paper 000 has no validation
set, so its K-NN memorises all 60,000 / 50,000 training images). Its adversarial sets
are crafted with the CNN experiment's best snapshot of one regime on the same
split (the attacks need gradients), from test samples the Z-NN classifies
correctly, keeping only the AEs the Z-NN misclassifies.
"""

from __future__ import annotations

import logging

import numpy as np

from advfit.knn import neighbours as knn
from advfit.attacks.adversarial_sets import choose_sources, target_labels
from advfit.runtime.layout import NO_ATTACK
from advfit.attacks import AttackSpec, craft

log = logging.getLogger("advfit")


MEMORISE = ("train", "train_and_validation")


def training_index(split: dict, memorise: str = "train") -> np.ndarray:
    """Pooled indices of the samples the K-NN memorises, sorted."""
    if memorise not in MEMORISE:
        raise ValueError(f"unknown K-NN memorise choice {memorise!r}; known: {MEMORISE}")
    if memorise == "train":
        return np.asarray(split["train"])
    return np.sort(np.concatenate([split["train"], split["validation"]]))


class SplitKnn:
    """The K-NN classifiers (K = 1, 3, ..., Z) of one split, sharing one neighbour index."""

    def __init__(self, data, split: dict, z: int, algorithm: str = "brute",
                 batch_size: int = knn.DEFAULT_BATCH_SIZE, n_jobs: int = 1,
                 memorise: str = "train", vote_tie: str = "nearest"):
        self.ks = knn.odd_ks(z)
        self.z = z
        self.batch_size = batch_size
        self.vote_tie = vote_tie
        self.x_train, self.y_train = data.take(training_index(split, memorise))
        self.index = knn.NeighbourIndex(self.x_train, algorithm, n_jobs)

    @classmethod
    def from_spec(cls, data, split: dict, spec: dict, n_jobs: int = 1) -> "SplitKnn":
        """From the config's ``knn`` section (validated: every key present)."""
        return cls(data, split, spec["z"], spec["algorithm"], spec["batch_size"], n_jobs,
                   spec["memorise"], spec["vote_tie"])

    def predict(self, x: np.ndarray) -> dict[int, np.ndarray]:
        return knn.knn_predict_all_k(self.x_train, self.y_train, x, self.ks,
                                     batch_size=self.batch_size, index=self.index,
                                     vote_tie=self.vote_tie)


def craft_knn_adversarial_set(model, classifier: SplitKnn, x_test, y_test, test_index,
                              predicted_test_z, attack: AttackSpec, subset_size: int | str,
                              seed: int, source_seed: int | None = None) -> dict[str, np.ndarray]:
    """AEs crafted on ``model`` from Z-NN-correct test samples, kept if the Z-NN errs.

    ``source_seed`` (default ``seed``) draws the attacked samples; the same
    for every attack of a split, so that attacks are compared on one sample.
    """
    correct = knn.attack_sources(predicted_test_z, y_test)
    sources = choose_sources(correct, subset_size, seed if source_seed is None else source_seed)
    log.info("%s: attacking %d of %d test samples the %d-NN gets right", attack.label,
             len(sources), len(correct), classifier.z)
    y_target = target_labels(y_test[sources], int(model.output_shape[-1]), attack.target, seed)
    x_adv = craft(attack, model, x_test[sources], y_test[sources], seed=seed, y_target=y_target)
    predicted_z = classifier.predict(x_adv)[classifier.z]
    kept = knn.filter_adversarial_set(x_adv, y_test[sources], test_index[sources], predicted_z)
    log.info("%s: %d of %d AEs fool the %d-NN", attack.label, int(kept["n_kept"]), len(sources),
             classifier.z)
    return {key: value for key, value in kept.items() if key != "keep"}


def evaluate_knn_split(classifier: SplitKnn, data, split: dict, test_predictions,
                       adversarial: dict[str, dict]):
    """Tidy rows (k, eval_set, attack, n, n_correct, accuracy) and the fail subset."""
    y_test = data.y[split["test"]]
    rows = knn.accuracy_rows(classifier.predict(classifier.x_train), classifier.y_train, "train")
    rows += knn.accuracy_rows(test_predictions, y_test, "test")
    failed = knn.fail_subset(test_predictions[classifier.z], y_test)
    rows += knn.accuracy_rows(test_predictions, y_test[failed], "fail_subset", positions=failed)
    for name, adv in adversarial.items():
        rows += knn.accuracy_rows(classifier.predict(adv["x"]), adv["y"], "adversarial", name)
    return rows, np.asarray(split["test"])[failed]


def predictions_to_arrays(predictions: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"k{k}": labels for k, labels in predictions.items()}


def arrays_to_predictions(arrays: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    return {int(key[1:]): value for key, value in arrays.items() if key[0] == "k" and key[1:].isdigit()}


__all__ = ["SplitKnn", "craft_knn_adversarial_set", "evaluate_knn_split", "NO_ATTACK"]
