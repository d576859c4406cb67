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
    from advfit.studies import study_configs

    config = yaml.safe_load(path.read_text())
    # a studies config: each study's entry gets what a single config would
    entries = config.get("studies") or [config]
    for entry in entries:
        if entry.get("dataset", config.get("dataset"))["name"] == "image_folder":
            _image_folder(tmp_path / "images")
            entry["dataset"] = {**entry["dataset"], "path": str(tmp_path / "images"),
                                "test_fraction": 0.2}
            entry["attack_subset_size"] = 10  # the stand-in folder has 10 test images
    done = run_snakemake(tmp_path, "--dry-run", "--quiet", "rules", config=config, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    total = re.search(r"^total\s+(\d+)", done.stdout, re.M)
    studies = study_configs(config).values() if config.get("studies") else [config]
    least = 0
    for study in studies:  # training, crafting and evaluation jobs at least
        n_splits = len(study["splits"].get("use", range(study["splits"]["n_splits"])))
        least += n_splits * len(study["regimes"]) * (1 + len(study["attacks"]))
    assert total and int(total.group(1)) > least


PAPER_CONFIGS = [p for p in CONFIGS if p.stem.startswith("paper")]


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=[p.stem for p in PAPER_CONFIGS])
def test_paper_configs_name_their_l2_convention_and_fgsm_choice(path):
    config = yaml.safe_load(path.read_text())
    assert config["distances"]["l2_convention"] == "pixels"  # the papers' L2
    if any(spec.get("method", name).startswith("fgsm")
           for name, spec in config["attacks"].items()):
        assert "untargeted" in path.read_text()  # the comment states the choice and why


PAPER_000 = [p for p in CONFIGS if p.stem.startswith("paper000")]


@pytest.mark.parametrize("path", PAPER_000, ids=[p.stem for p in PAPER_000])
def test_paper_000_configs_train_on_the_papers_sizes(path):
    """Paper 000 trains on all 60,000 (MNIST) / 50,000 (CIFAR-10) images: no validation
    set; in paper000_all, every study does."""
    from advfit.config import validate_config
    from advfit.studies import study_configs

    config = yaml.safe_load(path.read_text())
    for study in (study_configs(config).values() if config.get("studies") else [config]):
        _check_paper_000_sizes(study, validate_config)


def _check_paper_000_sizes(raw, validate_config):
    from types import SimpleNamespace

    from advfit.data.datasets import DATASETS
    from advfit.data.splits import make_splits

    # image_folder needs the user's folder to validate (planned in the test above)
    config = validate_config(raw) if raw["dataset"]["name"] != "image_folder" else raw
    assert config["splits"]["validation_fraction"] == 0
    assert config["best_snapshot"]["metric"] == "test_accuracy"
    if config.get("knn"):
        assert config["knn"]["memorise"] == "train_and_validation"
    name = config["dataset"]["name"]
    if name in DATASETS:
        info = DATASETS[name]
        # Labels only (make_splits never looks at the images): official sizes, balanced.
        y = np.arange(info.n_train + info.n_test) % info.n_classes
        data = SimpleNamespace(y=y, official_test=np.arange(info.n_train, len(y)))
        split = make_splits(data, "shuffle", 1, 0, config["splits"]["validation_fraction"])[0]
        assert (len(split["train"]), len(split["validation"]), len(split["test"])) == (
            info.n_train, 0, info.n_test)
