"""Per-job timing for benchmarks/workflow.py; inert unless ADVFIT_BENCH_TRACE is set.

benchmarks/workflow.py puts this folder on PYTHONPATH, so that every Python
process Snakemake starts for a ``script:`` job (``.snakemake/scripts/tmp*.py``)
appends one JSON line to $ADVFIT_BENCH_TRACE when it exits: when the process
started (from /proc, 10 ms resolution), when the interpreter reached site
import, when it exited, the rule and log of the job, and how long the first
import of each heavy library took (tensorflow, keras, cleverhans, art, pandas,
sklearn, matplotlib, scipy; an import nested in another one counts towards the
outer one). Cost: one Python function call per import statement.
"""

import os
import sys

_TRACE = os.environ.get("ADVFIT_BENCH_TRACE")

if _TRACE and sys.argv and "/.snakemake/scripts/" in os.path.abspath(sys.argv[0]):
    import atexit
    import builtins
    import json
    import time

    def _process_start() -> float:
        """Wall-clock time at which this process was created (fork/exec of python)."""
        with open("/proc/self/stat") as handle:
            stat = handle.read()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22: starttime
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - max(age, 0.0)

    _T_SITE = time.time()
    _T_START = _process_start()
    _WATCH = {"tensorflow", "keras", "cleverhans", "art", "pandas", "sklearn", "matplotlib",
              "scipy", "snakemake"}
    _IMPORTS: dict = {}
    _DEPTH = [0]
    _ORIGINAL_IMPORT = builtins.__import__

    def _timed_import(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.partition(".")[0]
        if level == 0 and not _DEPTH[0] and top in _WATCH and top not in sys.modules:
            _DEPTH[0] += 1
            start = time.perf_counter()
            try:
                return _ORIGINAL_IMPORT(name, globals, locals, fromlist, level)
            finally:
                _DEPTH[0] -= 1
                _IMPORTS[top] = _IMPORTS.get(top, 0.0) + time.perf_counter() - start
        return _ORIGINAL_IMPORT(name, globals, locals, fromlist, level)

    builtins.__import__ = _timed_import

    _WRITTEN = []

    def _write_record() -> None:
        if _WRITTEN:
            return
        _WRITTEN.append(True)
        job = getattr(sys.modules.get("__main__"), "snakemake", None)
        try:
            log = str(job.log[0]) if job is not None and len(job.log) else None
        except Exception:  # noqa: BLE001 - a trace must never break a job
            log = None
        record = {
            "pid": os.getpid(),
            "script": os.path.basename(sys.argv[0]),
            "rule": getattr(job, "rule", None),
            "log": log,
            "t_start": _T_START,
            "t_site": _T_SITE,
            "t_exit": time.time(),
            "imports": _IMPORTS,
        }
        with open(_TRACE, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    atexit.register(_write_record)
    _ORIGINAL_EXIT = os._exit

    def _exit_after_record(status):
        """A job that ends with os._exit (skipping atexit handlers) is recorded too."""
        try:
            _write_record()
        finally:
            _ORIGINAL_EXIT(status)

    os._exit = _exit_after_record
