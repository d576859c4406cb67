import importlib.util
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The science lives in the advfit package under src/, which the jobs import
# from the environment (`pip install -e .`, see README). Refuse to start with
# a missing or foreign copy rather than run code other than this checkout's.
SRC = Path(workflow.basedir) / "src"
_spec = importlib.util.find_spec("advfit")
if _spec is None or Path(_spec.origin).resolve().parent != (SRC / "advfit").resolve():
    raise WorkflowError(
        f"the advfit package of this checkout is not installed in this environment "
        f"(found: {_spec.origin if _spec else 'none'}); run `pip install -e {workflow.basedir}`"
    )

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
