"""Warm interpreters: rule scripts run in a process that has TensorFlow imported.

Why: a model job of the default run does 2-15 s of work but spends ~4.5 s
importing TensorFlow, Keras, cleverhans and ART and ~1 s tearing them down;
with 30 such jobs on 2 cores, starting processes was half of the run
(benchmarks/README.md). Snakemake starts every job as a fresh ``python``.

How: the first model job of a run starts a *warm interpreter* for its working
directory: a Python process that imports the libraries once and never starts
TensorFlow's runtime (no op runs, no thread pool, no GPU context), so that it
can fork safely. A rule script calls :func:`handoff` first thing. In the
process Snakemake started, that call connects over a Unix socket, hands over
its stdin, stdout and stderr, working directory, environment and script path,
and waits; the warm interpreter forks a child that takes them over and runs
the script from its first line (where ``handoff`` now returns at once). The
child's exit status becomes the job's.

What stays as before: the job's log, outputs, threads and seeds (the same
numbers bit for bit: tested); killing a job, or Snakemake with its process
group, stops the work (the child kills itself as soon as the job's process is
gone); a failure to start or reach a warm interpreter runs the script in the
job's own process, as without this module. What differs: Snakemake's
``benchmark:`` files time the job right (column ``s``) but measure memory and
CPU of the waiting process only; the job's log ends with the child's peak RSS
and CPU time.

Scope: one warm interpreter per working directory, Python environment,
version of the advfit code and import-shaping environment variables (a
change starts a new one); only processes of the same user may use it; it
exits after ``ADVFIT_WARM_IDLE`` seconds (default 60) with nothing to do, or
when the workflow ends. ``ADVFIT_WARM=0`` turns it off; it is off by default
under Slurm (``SLURM_JOB_ID`` set: each job step ends its own processes),
where ``ADVFIT_WARM=1`` turns it on.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path

# Not preloaded: this package, and the figures (no model job draws one).
_NOT_PRELOADED = ("advfit.jobs", "advfit.report")
# Environment variables read while those modules are imported: part of the key.
_KEY_PREFIXES = ("TF_", "KERAS_", "OMP_", "OPENBLAS_", "MKL_", "XLA_", "PYTHON")
_KEY_NAMES = ("LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV", "CUDA_HOME", "CUDA_PATH")
_HEADER = struct.Struct("!I")
START_TIMEOUT_S = 300.0  # the warm interpreter must fork the job within this
STATE_DIR = ".snakemake/advfit-warm"

# Set in a child of the warm interpreter: handoff() returns at once there.
IN_WORKER = False
# Why this job runs in its own process (None: it did not try, or it is a worker).
FALLBACK_REASON: str | None = None


class Unavailable(Exception):
    """No warm interpreter could take the job before it started."""


def enabled(environ=os.environ) -> bool:
    value = environ.get("ADVFIT_WARM", "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False  # abstract Unix sockets and fork-after-import as tested: Linux only
    if value in ("1", "true", "yes", "on"):
        return True
    return "SLURM_JOB_ID" not in environ


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _code_fingerprint() -> list:
    """Path, size and mtime of every module of this advfit: an edit starts a new server."""
    root = _package_root()
    return sorted((str(p.relative_to(root)), (s := p.stat()).st_size, s.st_mtime_ns)
                  for p in root.rglob("*.py"))


def preload_modules() -> list[str]:
    """What a warm interpreter imports, derived rather than listed by hand: every module
    of the science package (all of advfit but ``jobs`` and ``report``), and every
    third-party module they import, at the top or inside a function (TensorFlow,
    Keras, cleverhans, ART, ...), read from their source. ``advfit.runtime.device``
    comes first: it sets TensorFlow's log level before TensorFlow loads."""
    import ast

    root, modules, third_party = _package_root(), [], set()
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name.startswith(_NOT_PRELOADED):
            continue
        modules.append(name)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                third_party.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                third_party.add(node.module)
    third_party = sorted(m for m in third_party if m.split(".")[0] != "advfit"
                         and m.split(".")[0] not in sys.stdlib_module_names)
    return ["advfit.runtime.device", *third_party, *modules]


def server_key(cwd: str | None = None, environ=os.environ) -> str:
    """What a warm interpreter must share with a job to run it."""
    env = {k: v for k, v in environ.items() if k.startswith(_KEY_PREFIXES) or k in _KEY_NAMES}
    blob = json.dumps({
        "cwd": os.path.realpath(cwd or os.getcwd()), "prefix": sys.prefix,
        "version": sys.version, "code": _code_fingerprint(), "env": env,
        "uid": os.getuid(),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def socket_name(key: str) -> bytes:
    """A Linux abstract socket: it vanishes with its process, no stale files."""
    return b"\0advfit-warm-" + key.encode()


# --- messages: a 4-byte length, then JSON (the first carries the fds) -------

def _send_message(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    payload = json.dumps(obj).encode()
    data = _HEADER.pack(len(payload)) + payload
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, head: bytes = b"") -> bytes:
    data = head
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed the connection mid-message")
        data += chunk
    return data


def _recv_message(sock: socket.socket, max_fds: int) -> tuple[dict, list[int]]:
    head, fds, _, _ = socket.recv_fds(sock, 1 << 16, max_fds)
    if not head:
        raise ConnectionError("peer closed the connection")
    head = _recv_exact(sock, _HEADER.size, head)
    size = _HEADER.unpack(head[:_HEADER.size])[0]
    body = _recv_exact(sock, _HEADER.size + size, head)
    return json.loads(body[_HEADER.size:]), list(fds)


def _read_lines(sock: socket.socket):
    """Status lines from the warm interpreter: STARTED, EXIT <code>, SIGNAL <n>, FAILED <why>."""
    buffer = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode(errors="replace")


# --- the job's side ----------------------------------------------------------

def handoff() -> None:
    """Run the calling rule script in a warm interpreter and exit with its status.

    Returns (and the script goes on in this process) inside the warm
    interpreter's child, when warm interpreters are off, or when none could
    take the job; :data:`FALLBACK_REASON` then says why.
    """
    global FALLBACK_REASON
    if IN_WORKER or not enabled():
        return
    try:
        conn = _connect_or_start()
    except Unavailable as error:
        FALLBACK_REASON = str(error)
        return
    with conn:
        try:
            _send_message(conn, {"op": "run", "argv": sys.argv, "cwd": os.getcwd(),
                                 "env": dict(os.environ), "pid": os.getpid()}, [0, 1, 2])
            conn.settimeout(START_TIMEOUT_S)
            lines = _read_lines(conn)
            first = next(lines, None)
        except (OSError, ValueError) as error:
            FALLBACK_REASON = f"the warm interpreter did not take the job: {error}"
            return
        if first != "STARTED":  # FAILED <why>, SIGNAL <n> before the start, or nothing
            FALLBACK_REASON = f"the warm interpreter did not take the job ({first or 'no answer'})"
            return
        # From here on the job runs in the child; this process only waits. A
        # signal that ends this process closes the connection, and the child
        # then kills itself.
        conn.settimeout(None)
        status = _job_status(lines)
    os._exit(status)


def _job_status(lines) -> int:
    for line in lines:
        word, _, value = line.partition(" ")
        if word == "EXIT":
            return int(value)
        if word == "SIGNAL":
            print(f"advfit.jobs.warm: the job's process was killed by signal {value}", file=sys.stderr)
            return 128 + int(value)
    print("advfit.jobs.warm: the warm interpreter's child ended without a status", file=sys.stderr)
    return 1


def _connect(name: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(name)
    except OSError:
        sock.close()
        raise
    return sock


def _connect_or_start() -> socket.socket:
    key = server_key()
    name = socket_name(key)
    try:
        return _connect(name)
    except OSError:
        pass
    server = _spawn_server(key)
    deadline = time.monotonic() + 30.0  # it binds before importing anything heavy
    while time.monotonic() < deadline:
        try:
            return _connect(name)
        except OSError:
            pass
        if server.poll() is not None:
            # It exited: it failed, or another job's server holds the name (then
            # the connection below succeeds).
            try:
                return _connect(name)
            except OSError:
                raise Unavailable(f"the warm interpreter failed to start (exit "
                                  f"{server.returncode}; see {_log_path(key)})") from None
        time.sleep(0.02)
    raise Unavailable("the warm interpreter did not open its socket within 30 s")


def _log_path(key: str, cwd: str | None = None) -> Path:
    return Path(cwd or os.getcwd()) / STATE_DIR / f"{key[:16]}.log"


def _spawn_server(key: str):
    import subprocess

    log = _log_path(key)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        # Its own session: a signal to one job's process group must not reach
        # the server or the other jobs' children.
        return subprocess.Popen(
            [sys.executable, "-m", "advfit.jobs.warm", "serve", key, os.getcwd()],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)


def stop_servers(cwd: str | None = None) -> int:
    """Ask every warm interpreter of this working directory to exit; returns how many.

    Jobs already running finish normally: they do not depend on it.
    """
    folder = Path(cwd or os.getcwd()) / STATE_DIR
    stopped = 0
    for record in folder.glob("*.json") if folder.is_dir() else []:
        try:
            key = json.loads(record.read_text())["key"]
            with _connect(socket_name(key)) as sock:
                _send_message(sock, {"op": "stop"})
            stopped += 1
        except (OSError, ValueError, KeyError):
            record.unlink(missing_ok=True)  # its server is gone
    return stopped


# --- the warm interpreter ----------------------------------------------------

def serve(key: str, cwd: str, idle_s: float | None = None) -> int:
    """The warm interpreter's main loop (``python -m advfit.jobs.warm serve KEY CWD``)."""
    import errno
    import select
    import signal

    idle_s = float(os.environ.get("ADVFIT_WARM_IDLE", 60)) if idle_s is None else idle_s
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(socket_name(key))  # first: a second server for the key stops here
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        _say(f"another warm interpreter already serves {key[:16]}: exiting")
        return 0
    listener.listen(64)
    record = Path(cwd) / STATE_DIR / f"{key[:16]}.json"
    started = time.perf_counter()
    os.chdir("/")  # hold no working directory: a test may delete it
    try:
        n_modules = _preload()
        _say(f"pid {os.getpid()} ready in {time.perf_counter() - started:.2f} s "
             f"(imported {n_modules} modules; TensorFlow runtime not started)")
        _write_record(record, key)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        children: dict[int, socket.socket] = {}
        last_busy, stopping = time.monotonic(), False
        while not (stopping and not children):
            if not children and time.monotonic() - last_busy > idle_s:
                _say(f"idle for {idle_s:.0f} s: exiting")
                break
            watched = [wake_r] + ([] if stopping else [listener])
            ready, _, _ = select.select(watched, [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 512)
            _reap(children)
            if listener in ready:
                last_busy = time.monotonic()
                stopping = _accept(listener, children, (wake_r, wake_w)) or stopping
                if stopping:
                    listener.close()
            if children:
                last_busy = time.monotonic()
        return 0
    finally:
        record.unlink(missing_ok=True)
        _say(f"exiting; CPU time: {_cpu_seconds():.1f} s (with the jobs it ran)")


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have been reaped."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _say(message: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


def _write_record(record: Path, key: str) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(record.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "pid": os.getpid()}))
    tmp.rename(record)


def _preload() -> int:
    """Import :func:`preload_modules`; return how many."""
    import importlib
    import threading
    import warnings

    modules = preload_modules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. ART's "PyTorch not found"
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError:  # an optional library (or a fallback import) absent here
                pass
    from tensorflow.python.eager import context

    # Forking is safe only before TensorFlow starts its runtime and threads. No
    # public API says whether the eager context exists; counting OS threads
    # cannot stand in (OpenBLAS and TensorFlow start one each at import, both
    # fork-safe), so this one private attribute is read, here only.
    if context.context()._context_handle is not None or threading.active_count() != 1:
        raise RuntimeError("importing the libraries started TensorFlow's runtime or a thread: "
                           "cannot fork safely")
    return len(modules)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _accept(listener, children: dict, wake_fds) -> bool:
    """Serve one connection; True when asked to stop."""
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        if _peer_uid(conn) != os.getuid():
            conn.close()
            return False
        conn.settimeout(10.0)
        request, fds = _recv_message(conn, max_fds=3)
        conn.settimeout(None)
        if request.get("op") == "stop":
            _say("asked to stop")
            conn.close()
            return True
        if request.get("op") != "run" or len(fds) != 3:
            conn.close()
            return False
        try:
            pid = os.fork()
        except OSError as error:  # the job's own process runs it instead
            conn.sendall(f"FAILED cannot fork: {error}\n".encode())
            raise
        if pid == 0:
            _run_child(conn, request, fds, listener, wake_fds)  # never returns
        children[pid] = conn
        _say(f"job {Path(request['argv'][0]).name} in child {pid} (for pid {request.get('pid')})")
    except OSError as error:
        _say(f"could not serve a connection: {error}")
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)
    return False


def _reap(children: dict) -> None:
    import signal

    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        if os.WIFSIGNALED(status):
            # The child could not say it itself.
            number = os.WTERMSIG(status)
            _say(f"child {pid} killed by signal {signal.Signals(number).name}")
            try:
                conn.sendall(f"SIGNAL {number}\n".encode())
            except OSError:
                pass
        conn.close()


def _run_child(conn, request: dict, fds: list[int], listener, wake_fds) -> None:
    """In the forked child: become the job's process and run its script."""
    import signal

    status, finished = 1, None
    try:
        # From the child, so that its EXIT can only come after it; a child
        # killed before this line leaves the job to its own process.
        conn.sendall(b"STARTED\n")
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        listener.close()
        for fd in wake_fds:
            os.close(fd)
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        finished = _watch_job_process(conn)
        status = _run_script(request["argv"])
    except BaseException:  # noqa: BLE001 - whatever happens, report a status
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        if finished is not None:
            finished.set()  # the job's process exits once it reads the status
        try:
            conn.sendall(f"EXIT {status}\n".encode())
        finally:
            os._exit(status)


def _watch_job_process(conn):
    """Kill this child as soon as the job's process (the peer) is gone.

    Returns the event to set once the job is over: from then on the peer's
    exit is expected.
    """
    import signal
    import threading

    finished = threading.Event()

    def watch():
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="advfit-warm-watch", daemon=True).start()
    return finished


def _run_script(argv: list[str]) -> int:
    global IN_WORKER
    import runpy

    IN_WORKER = True
    _set_process_name(Path(argv[0]).name)
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as done:
        code = done.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, status 1
        import traceback

        traceback.print_exc()
        return 1
    return 0


def _set_process_name(name: str) -> None:
    """Show the job in ps/top instead of the server's name (Linux, best effort)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, ("advfit " + name.split(".")[-2] if "." in name else name)[:15].encode())
    except Exception:  # noqa: BLE001
        pass


def worker_usage() -> str | None:
    """Peak RSS and CPU time of this process, when it is a warm interpreter's child."""
    if not IN_WORKER:
        return None
    from advfit.jobs.usage import own_usage

    usage = own_usage()
    return (f"warm interpreter child: peak RSS {usage['max_rss']:.0f} MiB, "
            f"CPU {usage['cpu_time']:.1f} s")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "serve":
        return serve(argv[1], argv[2])
    if len(argv) in (1, 2) and argv[0] == "stop":
        print(f"stopped {stop_servers(argv[1] if len(argv) == 2 else None)} warm interpreter(s)")
        return 0
    print("usage: python -m advfit.jobs.warm serve KEY CWD | stop [CWD]", file=sys.stderr)
    return 64


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: the child's
    # IN_WORKER flag must be the one that `from advfit.jobs.warm import handoff` sees.
    from advfit.jobs import warm

    sys.exit(warm.main(sys.argv[1:]))
