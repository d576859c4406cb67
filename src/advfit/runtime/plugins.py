"""Your own code from the config: a model builder or an attack function.

A reference is ``path/to/file.py:function`` (a path relative to the directory
the workflow runs in, or absolute) or ``package.module:function`` (importable
from the environment). Loading names the config key on every failure; the
source hash of the file goes into the rule parameters and the artefacts, so
editing the file reruns what depends on it. Finding and hashing the file runs
none of your code (the scheduler does it on every command); importing it does,
and only the config check's child process and the jobs import it.

A plugin call can be bounded in time (:func:`time_limit`): the jobs bound each
attack call by ``limits.plugin_timeout_s``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("advfit")

TIMEOUT_KEY = "limits.plugin_timeout_s"
# After the interrupt, how long a call may take to unwind before the process is ended.
HARD_EXIT_GRACE_S = 30.0
HARD_EXIT_STATUS = 124  # as coreutils' timeout

# Where relative file references start; None: the working directory.
_base_dir: Path | None = None


class PluginError(ValueError):
    """A plugin reference that cannot be used; the message names the config key."""


class PluginTimeout(BaseException):
    """A plugin call ran past its time limit; the message names the config keys.

    A BaseException, like KeyboardInterrupt, so that a plugin's own
    ``except Exception`` (a retry loop, say) does not swallow it.
    """


@dataclass(frozen=True)
class CallLimit:
    """``limits.plugin_timeout_s`` as a rule param.

    Snakemake reruns a job whose params changed, and compares only params of
    built-in types (it records no other): the limit changes no result, so it
    travels in this wrapper, and raising it reruns nothing.
    """

    seconds: float


@contextlib.contextmanager
def relative_to(base: str | Path) -> Iterator[None]:
    """Resolve relative file references against ``base`` instead of the working
    directory (the config check runs in a scratch directory)."""
    global _base_dir
    previous, _base_dir = _base_dir, Path(base)
    try:
        yield
    finally:
        _base_dir = previous


def split_ref(ref: str, key: str) -> tuple[str, str]:
    target, sep, name = str(ref).rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise PluginError(f"config key '{key}': {ref!r} is not 'file.py:function' or "
                          f"'module:function'")
    return target, name


def source_path(ref: str, key: str) -> Path:
    """The file holding the referenced function (not imported: cheap)."""
    target, _ = split_ref(ref, key)
    if target.endswith(".py"):
        base = _base_dir or Path.cwd()
        path = base / target if _base_dir is not None else Path(target)
        if not path.is_file():
            raise PluginError(f"config key '{key}': file {target} not found "
                              f"(relative paths start in {base})")
        return path
    try:
        spec = _module_spec(target)
    except (ImportError, ValueError) as error:
        raise PluginError(f"config key '{key}': module {target} cannot be found: {error}") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise PluginError(f"config key '{key}': module {target} not found on the Python path")
    return Path(spec.origin)


def _module_spec(target: str):
    """Where module ``target`` is, without running it or its parent packages.

    ``importlib.util.find_spec("pkg.mod")`` imports ``pkg``, which would run a
    package's ``__init__`` in the scheduler; this asks the import system's
    finders level by level, as an import does, but executes nothing.
    """
    parts = target.split(".")
    spec, path = None, None
    for depth in range(1, len(parts) + 1):
        if depth > 1 and path is None:
            return None  # the parent is a module, not a package
        name = ".".join(parts[:depth])
        if name in sys.modules:
            spec = importlib.util.find_spec(name)  # already imported: nothing runs
        else:
            spec = next((found for finder in sys.meta_path
                         if hasattr(finder, "find_spec")
                         and (found := finder.find_spec(name, path)) is not None), None)
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return spec


def source_sha256(ref: str, key: str) -> str:
    return hashlib.sha256(source_path(ref, key).read_bytes()).hexdigest()


def load_callable(ref: str, key: str) -> Callable:
    target, name = split_ref(ref, key)
    path = source_path(ref, key)
    try:
        if target.endswith(".py"):
            # one module per file path, so two plugins named alike do not collide
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            module_name = f"advfit_plugin_{digest}"
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except Exception as error:  # the user's code: report any failure with the key
        sys.modules.pop(locals().get("module_name", ""), None)
        raise PluginError(f"config key '{key}': importing {path} failed: "
                          f"{type(error).__name__}: {error}") from error
    function = getattr(module, name, None)
    if not callable(function):
        raise PluginError(f"config key '{key}': {path} has no function {name!r}")
    return function


def timeout_message(key: str, ref: str, seconds: float, what: str = "did not return") -> str:
    return (f"config key '{key}': {ref} {what} within {seconds:g} s (config key "
            f"'{TIMEOUT_KEY}'); if it is slow rather than stuck, raise that limit")


@contextlib.contextmanager
def time_limit(seconds: float | None, message: str,
               grace_s: float | None = None) -> Iterator[None]:
    """Raise :class:`PluginTimeout` (``message``) in the block after ``seconds``.

    How, and why so: the block runs on the main thread (a job's script, in
    its own process or a warm interpreter's child), and no thread can be
    stopped from outside. A watchdog thread sends SIGALRM to the main thread,
    whose handler raises: that stops a Python loop at its next bytecode, and a
    ``time.sleep`` or a blocking read at once (the system call returns EINTR
    to the thread the signal targets). Code stuck in C that never returns to
    Python, or a plugin that catches the exception and goes on, is ended by
    the watchdog ``grace_s`` later (default :data:`HARD_EXIT_GRACE_S`): it logs
    the message and exits the process with status 124, so the job fails, and a
    warm interpreter loses only the child that ran it. Off the main thread
    there is no handler: only that hard exit. ``seconds`` None or 0: no limit.
    """
    if not seconds:
        yield
        return
    watchdog = _Watchdog(seconds, HARD_EXIT_GRACE_S if grace_s is None else grace_s, message)
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        previous = signal.signal(signal.SIGALRM, watchdog.on_alarm)
        if previous is None:  # a handler set outside Python: cannot be put back
            previous = signal.SIG_DFL
        watchdog.target = threading.get_ident()
    watchdog.start()
    try:
        yield
    finally:
        watchdog.stop()
        if on_main and not watchdog.fired:
            # Once fired, a SIGALRM may still be pending: restoring the default
            # action would let it kill the process. The handler is a no-op now.
            signal.signal(signal.SIGALRM, previous)
    if watchdog.fired:  # the block returned after the interrupt: it caught it
        raise PluginTimeout(message)


class _Watchdog(threading.Thread):
    def __init__(self, seconds: float, grace_s: float, message: str):
        super().__init__(name="advfit-plugin-timeout", daemon=True)
        self.seconds, self.grace_s, self.message = float(seconds), float(grace_s), message
        self.target: int | None = None  # the main thread, to interrupt
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._over = threading.Event()

    def on_alarm(self, signum, frame) -> None:
        if not self._done:
            raise PluginTimeout(self.message)

    def stop(self) -> None:
        with self._lock:  # after this, no signal is sent
            self._done = True
        self._over.set()

    def run(self) -> None:
        if self._over.wait(self.seconds):
            return
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self.target is not None:
                signal.pthread_kill(self.target, signal.SIGALRM)
        if self._over.wait(self.grace_s):
            return
        _hard_exit(f"{self.message} (it did not stop within {self.grace_s:g} s of being "
                   f"interrupted: ending the process)")


def _hard_exit(message: str) -> None:
    """Log ``message`` (the job's log; stderr without logging set up), then exit now."""
    log.critical(message)
    for handler in [*log.handlers, *logging.getLogger().handlers]:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(HARD_EXIT_STATUS)


def model_source(config: dict) -> str | None:
    """sha256 of the custom model's builder file; None for a registry model."""
    model = config["model"]
    return source_sha256(model["builder"], "model.builder") if "builder" in model else None


def attack_sources(config: dict) -> dict[str, str]:
    """sha256 of each plugin attack's file, by attack name."""
    return {name: source_sha256(entry["function"], f"attacks.{name}.function")
            for name, entry in config["attacks"].items() if "function" in entry}
