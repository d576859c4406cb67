"""Every shipped config validates and plans (snakemake --dry-run) its whole DAG."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, run_snakemake

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _image_folder(root: Path) -> None:
    from PIL import Image

    for c in range(10):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(5):
            pixels = np.full((8, 8, 3), 20 * c + i, np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_plans_its_whole_dag(path, tmp_path):
    config = yaml.safe_load(path.read_text())
    if config["dataset"]["name"] == "image_folder":
        _image_folder(tmp_path / "images")
        config["dataset"]["path"] = str(tmp_path / "images")
        config["dataset"]["test_fraction"] = 0.2
        config["attack_subset_size"] = 10  # the stand-in folder has 10 test images
    done = run_snakemake(tmp_path, "--dry-run", "--quiet", "rules", config=config, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    total = re.search(r"^total\s+(\d+)", done.stdout, re.M)
    n_splits, n_regimes = config["splits"]["n_splits"], len(config["regimes"])
    assert total and int(total.group(1)) > n_splits * n_regimes * (1 + len(config["attacks"]))
