"""advfit: robustness to adversarial examples against the degree of fitting.

The subpackages follow the protocol's steps (PROTOCOL.md); each may import only
those before it in this list:

- ``runtime``: io, seeds, TensorFlow set-up, the run's names and file layout;
- ``data``: sources, formats, prepared datasets, splits;
- ``statistics``: tables over splits and their tests (no model);
- ``attacks``: one pure function per attack, the adversarial sets;
- ``models``: architectures, training with snapshots, label noise, adversarial training;
- ``evaluation``: snapshots on every set, the white-box and transfer views, metrics;
- ``knn``: experiment KNN;
- ``report``: figures.

``config`` (with ``registry_schema`` and ``plugin_check``) checks a run's
configuration against all of them. ``jobs`` is the rule scripts' support
(logs, warm interpreters): nothing above imports it.
"""

__version__ = "0.1.0"
