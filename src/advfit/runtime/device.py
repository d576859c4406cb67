"""TensorFlow set-up shared by every job that runs a model.

Thread counts must be fixed before TensorFlow's runtime starts, so jobs call
:func:`configure` first thing, before building any model.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep job logs readable

log = logging.getLogger("advfit")


def configure(threads: int, seed: int | None = None, deterministic: bool = True) -> str:
    """Honour the rule's ``threads``, seed every generator, and report the device.

    Returns a short description of the device that will run the model.
    """
    import tensorflow as tf
    import keras

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, int(threads)))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, int(threads)))
    except RuntimeError:  # the runtime already started (a second call in one process)
        log.warning("TensorFlow already initialised: thread counts left as they were")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.warning("TensorFlow already initialised: GPU memory growth left as it was")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    if deterministic:
        # Same seed => same weights: deterministic kernels cost little at this scale.
        tf.config.experimental.enable_op_determinism()
    slot = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if not gpus and slot not in ("", "-1"):
        # A scheduler gave this job a GPU that TensorFlow cannot use (no driver,
        # a CPU-only build, a fake device): carry on with the CPU, but say so.
        log.warning("a GPU was assigned (CUDA_VISIBLE_DEVICES=%s) but TensorFlow sees no usable "
                    "GPU: running on the CPU", slot)
    device = f"GPU ({gpus[0].name})" if gpus else f"CPU ({threads} threads)"
    log.info("TensorFlow %s on %s", tf.__version__, device)
    return device
