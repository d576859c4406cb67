"""Report: the seaborn figures of the tables. May import ``advfit.runtime`` and
``advfit.statistics``.

``plots`` (accuracy, ASR, deltas, distances, K-NN), ``view_plots`` (the
white-box and transfer views).
"""
