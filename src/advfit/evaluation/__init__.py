"""Evaluation (protocol steps 3-4 and the views): every snapshot on every set, the
white-box and transfer views, Lp distances and the robustness metrics. May import
``advfit.runtime``, ``advfit.data``, ``advfit.attacks``, ``advfit.models`` and
``advfit.statistics``.

``snapshots`` (accuracy of each snapshot per evaluation set, the fail subset),
``trajectory`` (white-box attack of each snapshot, the transfer matrix),
``distances`` (L0/L2/Linf), ``metrics`` (CLEVER, loss sensitivity, empirical
robustness), ``clever`` (advfit's fast CLEVER), ``snapshot_metrics`` (metrics
per snapshot).
"""
