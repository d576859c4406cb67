"""Experiment KNN (paper 000's second experiment): the K-NN swept over K, attacked
through a surrogate CNN. May import ``advfit.runtime``, ``advfit.data`` and
``advfit.attacks``.

``neighbours`` (exact K-NN, votes, accuracy per K), ``experiment`` (one
split: classify, craft, evaluate).
"""
