"""Counting an attack's image passes (advfit.attacks.counting) and the cached PGD trace:
counts inside traced loops, the same seed giving the same examples on a reused trace."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import correctly_classified


@pytest.fixture(scope="module")
def points(last_lenet, digits):
    return correctly_classified(last_lenet, digits, 40)


def _spec(name, **params):
    from advfit.attacks import AttackSpec

    return AttackSpec.from_config(name, params)


def test_forward_and_backward_counts_follow_the_attack_exactly(last_lenet, points):
    from advfit.attacks import craft
    from advfit.attacks.counting import CountingModel

    x, y = points
    counted = CountingModel(last_lenet)
    craft(_spec("fgsm", eps=0.1), counted, x, y, seed=0)
    assert counted.passes.forward == 40 and counted.passes.backward == 40
    counted.reset()
    # PGD: one gradient per step and point, in a traced tf.range loop, batches of 16
    craft(_spec("pgd", eps=0.1, eps_iter=0.02, nb_iter=7, batch_size=16), counted, x, y, seed=0)
    assert counted.passes.forward == 7 * 40 and counted.passes.backward == 7 * 40
    counted.reset()
    # a score-based attack takes no gradient
    craft(_spec("square", eps=0.1, n_queries=30), counted, x, y, seed=0)
    assert counted.passes.backward == 0 and counted.passes.forward > 40
    assert counted.input_shape == last_lenet.input_shape  # the model's own attributes


def test_apgd_counts_stop_when_every_point_is_fooled(last_lenet, points):
    """APGD leaves its loop once every point of a batch is fooled: at eps 0.3 that is long
    before 100 iterations, and the count shows it; at a tiny eps it runs them all."""
    from advfit.attacks import craft
    from advfit.attacks.counting import CountingModel

    x, y = points
    counted = CountingModel(last_lenet)
    craft(_spec("apgd_ce", eps=0.3, nb_iter=100), counted, x, y, seed=0)
    strong = counted.passes
    counted.reset()
    craft(_spec("apgd_ce", eps=1e-4, nb_iter=100), counted, x, y, seed=0)
    weak = counted.passes
    # the start and 100 iterations, each one forward and one backward per point
    assert weak.backward == 101 * 40
    assert weak.forward >= weak.backward
    assert strong.backward < weak.backward / 4


def test_the_cached_pgd_trace_follows_the_seed(last_lenet, points):
    """One trace serves every call; the random start comes from the seeded global
    generator outside it, so the same seed gives the same examples and another seed
    other ones, however many calls came before."""
    import keras

    from advfit.attacks import craft

    x, y = points
    spec = _spec("pgd", eps=0.1, eps_iter=0.02, nb_iter=5)

    def run(seed):
        keras.utils.set_random_seed(seed)
        return craft(spec, last_lenet, x, y, seed=seed)

    first = run(1)
    run(2)
    np.testing.assert_array_equal(run(1), first)
    assert not np.array_equal(run(2), first)
    assert np.abs(first - x).max() <= 0.1 + 1e-6
