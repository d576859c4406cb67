"""Statistics (protocol step 5): tidy tables over splits and the tests on them. Pure
NumPy/SciPy/pandas, no model. May import ``advfit.runtime`` only.

``inference`` (intervals, Welch, McNemar, Holm, effect sizes), ``aggregate``
(accuracy and distance tables), ``selection`` (the best snapshot M),
``robust_selection`` (M by robust validation accuracy, Rice et al. 2020),
``slopes`` (K-NN slopes and their tests), ``paired`` (per-example McNemar
tests), ``views`` (white-box and transfer summaries, delta tests by view).
"""
