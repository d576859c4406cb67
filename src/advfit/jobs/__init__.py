"""Job support, for the rule scripts only: each job's log and provenance
(``job_log``), and the warm interpreters (``warm``) that spare model jobs the
import of TensorFlow. No science module imports this package (a test checks);
it may import ``advfit.runtime``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Iterator

from advfit.jobs import usage, warm

log = logging.getLogger("advfit")


@contextlib.contextmanager
def job_log(path: str) -> Iterator[logging.Logger]:
    """Send this process's stdout, stderr (TensorFlow's C++ messages too) and
    the ``advfit`` logger to the rule's log file; log any failure there."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")
    start = time.perf_counter()
    _log_process()
    try:
        yield log
    except BaseException:
        log.exception("job failed")
        raise
    log.info("done in %.1f s", time.perf_counter() - start)
    child = warm.worker_usage()
    if child:
        log.info(child)
        usage.record_usage(path)  # for the benchmark file (usage.correct_benchmarks)


def _log_process() -> None:
    """Say where the job runs: a warm interpreter's child or its own process, and why."""
    if warm.IN_WORKER:
        log.info("running in a warm interpreter's child (pid %d): libraries already imported",
                 os.getpid())
    elif warm.FALLBACK_REASON:
        log.warning("running in the job's own process: %s", warm.FALLBACK_REASON)
