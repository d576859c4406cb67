import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The science lives in the advfit package, which the jobs import from the environment.
# Refuse to start with a missing or different copy rather than run code other than this
# workflow's: this checkout's src/ (`pip install -e .`), or an install of the same
# sources (`pip install <checkout>`, as a workflow that uses advfit as a module may
# have), compared file by file with the checkout's src/; a workflow read from a remote
# source (module `snakefile: github(...)`) has no src/ here, and is checked by version.
ADVFIT_VERSION = "0.1.0"  # = pyproject.toml's (tests/test_studies.py)
ROOT = Path(str(workflow.current_basedir)).parent.parent  # this file is workflow/rules/
SRC = ROOT / "src" / "advfit"


def _sources_digest(package):
    """One hash of a package folder's Python files and schema, by relative path."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def check_advfit_install():
    spec = importlib.util.find_spec("advfit")
    found = Path(spec.origin).resolve().parent if spec and spec.origin else None
    if SRC.is_dir():
        if found is None or (
            found != SRC.resolve() and _sources_digest(found) != _sources_digest(SRC)
        ):
            raise WorkflowError(
                f"the advfit package of this checkout ({SRC}) is not installed in this "
                f"environment (found: {found or 'none'}, "
                f"{'other sources' if found else 'not installed'}); "
                f"run `pip install -e {ROOT}`"
            )
    elif found is None or importlib.metadata.version("advfit") != ADVFIT_VERSION:
        raise WorkflowError(
            f"this workflow needs the advfit package {ADVFIT_VERSION} "
            f"(found: {found or 'none'}); run `pip install <advfit's repository>`"
        )


check_advfit_install()

from advfit.config import ConfigError, read_yaml


def check_config_files(paths):
    """Read each config file strictly before Snakemake's loader keeps it: a YAML
    error names the file and line, and a key given twice is refused (YAML
    would keep the last one silently)."""
    for path in paths:
        if Path(path).is_file():
            try:
                read_yaml(path)
            except ConfigError as error:
                raise WorkflowError(str(error)) from None


check_config_files(workflow.overwrite_configfiles or ["config.yaml"])
