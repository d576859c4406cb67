"""Your own code from the config: a model builder or an attack function.

A reference is ``path/to/file.py:function`` (a path relative to the directory
the workflow runs in, or absolute) or ``package.module:function`` (importable
from the environment). Loading names the config key on every failure; the
source hash of the file goes into the rule parameters and the artefacts, so
editing the file reruns what depends on it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable


class PluginError(ValueError):
    """A plugin reference that cannot be used; the message names the config key."""


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
        path = Path(target)
        if not path.is_file():
            raise PluginError(f"config key '{key}': file {target} not found "
                              f"(relative paths start in {Path.cwd()})")
        return path
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError) as error:
        raise PluginError(f"config key '{key}': module {target} cannot be found: {error}") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise PluginError(f"config key '{key}': module {target} not found on the Python path")
    return Path(spec.origin)


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


def model_source(config: dict) -> str | None:
    """sha256 of the custom model's builder file; None for a registry model."""
    model = config["model"]
    return source_sha256(model["builder"], "model.builder") if "builder" in model else None


def attack_sources(config: dict) -> dict[str, str]:
    """sha256 of each plugin attack's file, by attack name."""
    return {name: source_sha256(entry["function"], f"attacks.{name}.function")
            for name, entry in config["attacks"].items() if "function" in entry}
