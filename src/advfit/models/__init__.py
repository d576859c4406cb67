"""Models and training (protocol step 2): the architectures, one split x regime trained
with a snapshot every epoch, label noise and adversarial training. May import
``advfit.runtime`` and ``advfit.attacks`` (adversarial training crafts PGD).

``architectures`` (LeNet-5, Inception v3, a user's builder), ``training``
(``train_regime``: resumable, bit-identical), ``label_noise`` (the labels a
regime trains on), ``adversarial_training`` (PGD-AT, Madry et al. 2018).
"""
