"""Truthful benchmark files for jobs run by a warm interpreter.

Snakemake's ``benchmark:`` file measures the process tree of the process it
started: with a warm interpreter (:mod:`advfit.jobs.warm`) that is the waiting
job process, not the child doing the work. The child therefore records its
own use at the end of the job (:func:`record_usage`), and when the workflow
ends (``onsuccess``/``onerror``) :func:`correct_benchmarks` puts the records
into the benchmark files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from advfit.jobs import warm

# Snakemake's `benchmark:` file measures the process tree of the process it
# started: with a warm interpreter that is the waiting job process, not the
# child doing the work. The child therefore records its own use at the end of
# the job, and when the workflow ends (onsuccess/onerror) the records replace
# the waiting process's figures in the benchmark files.
USAGE_DIR = f"{warm.STATE_DIR}/usage"
BENCHMARK_WINDOW_S = 600.0  # a benchmark file written later than this is another run's


def own_usage() -> dict:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"max_rss": usage.ru_maxrss / 1024, "cpu_time": usage.ru_utime + usage.ru_stime,
            # blocks of 512 bytes, as Linux counts them; Snakemake writes MiB
            "io_in": usage.ru_inblock * 512 / 2**20, "io_out": usage.ru_oublock * 512 / 2**20}


# results/logs/...X.log, also under a study's results/studies/<study>/ or a host
# workflow's module prefix
_LOG = re.compile(r"^((?:.*/)?results/(?:studies/[a-z][a-z0-9_]*/)?)logs/(.+)\.log$")


def benchmark_path(log_path: str) -> str | None:
    """The benchmark file of the job whose log is ``log_path``: the rules keep
    ``results/logs/...X.log`` and ``results/benchmarks/...X.tsv`` side by side."""
    match = _LOG.match(str(log_path))
    return f"{match[1]}benchmarks/{match[2]}.tsv" if match else None


def record_usage(log_path: str) -> None:
    """In a warm interpreter's child, at the end of a job: write its own CPU time,
    peak RSS and I/O for :func:`correct_benchmarks`. Does nothing elsewhere."""
    if not warm.IN_WORKER or benchmark_path(log_path) is None:
        return
    folder = Path(USAGE_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(log_path).encode()).hexdigest()[:24] + ".json"
    tmp = folder / f".{name}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"log": str(log_path), "time": time.time(), **own_usage()}))
    tmp.rename(folder / name)


def correct_benchmarks(cwd: str | None = None) -> int:
    """Put each warm job's own figures into its benchmark file (columns max_rss,
    io_in, io_out, cpu_time and mean_load; max_vms, max_uss and max_pss, which the
    child cannot measure as Snakemake does, become NA); ``s`` and ``h:m:s`` stay
    Snakemake's. Returns how many files were corrected; every record is consumed."""
    folder = Path(cwd or os.getcwd())
    corrected = 0
    for path in sorted((folder / USAGE_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            corrected += _correct_one(folder / benchmark_path(record["log"]), record)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a record without its file (a failed job): nothing to correct
        finally:
            path.unlink(missing_ok=True)
    return corrected


def _correct_one(tsv: Path, record: dict) -> bool:
    written = tsv.stat().st_mtime
    if not record["time"] - 1 <= written <= record["time"] + BENCHMARK_WINDOW_S:
        return False  # written by another run of the job (e.g. without warm interpreters)
    header, *rows = tsv.read_text().splitlines()
    columns = header.split("\t")
    if len(rows) != 1:
        return False  # --benchmark-repeats: one record cannot stand for several runs
    row = dict(zip(columns, rows[0].split("\t")))
    seconds = float(row["s"])
    row.update({"max_rss": f"{record['max_rss']:.2f}", "max_vms": "NA", "max_uss": "NA",
                "max_pss": "NA", "io_in": f"{record['io_in']:.2f}",
                "io_out": f"{record['io_out']:.2f}", "cpu_time": f"{record['cpu_time']:.2f}",
                "mean_load": f"{100 * record['cpu_time'] / seconds:.2f}" if seconds else "NA"})
    tmp = tsv.with_name(f".{tsv.name}.tmp{os.getpid()}")
    tmp.write_text(header + "\n" + "\t".join(row[c] for c in columns) + "\n")
    os.utime(tmp, (written, written))  # the file's time stays the job's
    tmp.rename(tsv)
    return True


def finish_workflow() -> None:
    """At the end of a run (``onsuccess``/``onerror``): ask this directory's warm
    interpreters to exit (else they idle out) and correct the benchmark files of
    the jobs they ran. A host workflow that uses advfit as a module calls it from
    its own handlers (a module's handlers do not run)."""
    warm.stop_servers()
    correct_benchmarks()
