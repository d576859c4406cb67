"""The Snakemake workflow catalog's checks: snakefmt formatting and `snakemake
--lint` clean, for one study and for many; the catalog's metadata file is valid."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


def test_the_rules_are_snakefmt_formatted():
    done = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile",
                           "workflow/rules"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("configfile", [None, ".test/config_studies/config.yaml"])
def test_snakemake_lint_is_clean(tmp_path, configfile):
    args = ["--configfile", str(ROOT / configfile)] if configfile else []
    if not configfile:
        (tmp_path / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--lint", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr


def test_the_catalog_file_says_how_to_run():
    catalog = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True
    assert "--configfile" in usage["mandatory-flags"]["flags"]
    for env in ("envs/advfit.yaml",):
        assert (ROOT / env).is_file()


def test_a_deployed_copy_gets_the_default_config():
    """snakedeploy copies the repository's config/ folder: it must hold the default run."""
    assert (ROOT / "config/config.yaml").read_text() == (ROOT / "config.yaml").read_text()
