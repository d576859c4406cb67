"""Runtime: what every stage stands on. Imports no other advfit package.

``io`` (atomic writes, npz/json/csv, versions), ``seeds`` (job seeds),
``device`` (TensorFlow threads, determinism, the device a job runs on),
``layout`` (evaluation-set names and snapshot file names, defined once) and
``plugins`` (loading a user's ``file.py:function``).
"""

from advfit.runtime.device import configure  # noqa: F401  (`runtime.configure` in every job)
