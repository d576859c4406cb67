"""ART's SquareAttack as an advfit plugin attack (docs/attacks.md, "Your own attack").

Config:

    attacks:
      square:
        method: plugin
        function: examples/square_attack.py:attack
        params: {eps: 0.1, max_iter: 100}

SquareAttack (Andriushchenko et al. 2020) is a score-based black-box attack:
it queries the model's outputs, never its gradients, so it also shows
whether a snapshot's robustness to gradient attacks is gradient masking.
advfit's registry has no such attack. Untargeted, L-infinity by default.
"""

import numpy as np


def attack(model, x, y, *, seed, eps=0.1, max_iter=100, p_init=0.8, nb_restarts=1,
           norm="inf", batch_size=128):
    from art.attacks.evasion import SquareAttack

    from advfit.attacks import art_classifier, quiet_art

    # ART's SquareAttack draws from NumPy's global generator: seed it with the job's seed.
    np.random.seed(seed)
    square = SquareAttack(art_classifier(model), norm=np.inf if norm == "inf" else int(norm),
                          eps=float(eps), max_iter=int(max_iter), p_init=float(p_init),
                          nb_restarts=int(nb_restarts), batch_size=int(batch_size),
                          verbose=False)
    with quiet_art():
        return square.generate(x, y=y).astype(np.float32)
