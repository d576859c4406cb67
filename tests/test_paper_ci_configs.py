"""End to end: the CI configs (configs/ci_mnist.yaml, configs/ci_cifar10.yaml) on
real MNIST and CIFAR-10 subsets from ../shared/data, then their HTML report."""

from __future__ import annotations

import base64
import itertools
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from advfit.runtime.io import load_npz, read_table
from conftest import ROOT, SHARED_DATA, run_snakemake

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not SHARED_DATA.is_dir(),
                       reason=f"real dataset copies not found at {SHARED_DATA}"),
]

# The local CIFAR-10 copy's batches differ from the canonical md5 (see
# test_real_datasets_workflow.py): the config vouches for it.
SOURCES = {
    "ci_mnist": {"path": str(SHARED_DATA / "mnist")},
    "ci_cifar10": {"path": str(SHARED_DATA / "cifar-10-batches-py"), "verify": False},
}
FIGURES = ["accuracy_vs_epoch", "asr_vs_epoch", "delta_accuracy", "l2_distribution",
           "knn_train_test_vs_k", "knn_accuracy_vs_k", "knn_slope_pvalues",
           "robustness_metrics"]
REPORT_TABLES = ["accuracy_summary.csv", "best_snapshots.csv", "adversarial_sets.csv",
                 "distances_summary.csv", "delta_accuracy.csv", "delta_tests.csv",
                 "knn_accuracy.csv", "knn_slope_tests.csv", "robustness_metrics.csv",
                 "paired_tests.csv", "accuracy_intervals.csv"]
SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class CiRun:
    name: str
    config: dict
    workdir: Path
    seconds: float

    def table(self, name: str) -> pd.DataFrame:
        return read_table(self.workdir / "results/tables" / name)

    def product(self, *keys):
        """Every combination of regimes, splits and attacks the config asks for."""
        values = {"regime": list(self.config["regimes"]),
                  "split": list(range(self.config["splits"]["n_splits"])),
                  "attack": list(self.config["attacks"])}
        return set(itertools.product(*(values[k] for k in keys)))


@pytest.fixture(scope="module", params=sorted(SOURCES))
def ci_run(request, tmp_path_factory) -> CiRun:
    name = request.param
    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    config["dataset"].update(SOURCES[name])
    workdir = tmp_path_factory.mktemp(name)
    start = time.monotonic()
    done = run_snakemake(workdir, config=config, timeout=1500)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-5000:]
    print(f"\n{name}: workflow ran in {seconds:.0f} s")
    report = run_snakemake(workdir, "--report", "results/report.html", timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    return CiRun(name, config, workdir, seconds)


def _report_entries(html: str) -> dict[str, tuple[str, bytes]]:
    """The files a Snakemake report embeds: path -> (caption HTML, decoded content)."""
    starts = list(re.finditer(r'"(results/[^"]+)": \{"name": ', html))
    entries = {}
    for start, end in zip(starts, starts[1:] + [None]):
        body = html[start.end():end.start() if end else len(html)]
        caption = re.search(r'"caption": "((?:[^"\\]|\\.)*)"', body)
        data = re.search(r'"data_uri": "data:[^",]*?;base64,([A-Za-z0-9+/=]+)"', body)
        if caption and data:
            entries[start[1]] = (caption[1], base64.b64decode(data[1]))
    return entries


def test_report_holds_every_figure_and_key_table(ci_run):
    html = (ci_run.workdir / "results/report.html").read_text()
    figures = ci_run.workdir / "results/figures"
    assert sorted(p.stem for p in figures.glob("*.png")) == sorted(FIGURES)
    embedded = _report_entries(html)
    expected = [f"results/figures/{f}.png" for f in FIGURES] + [
        f"results/tables/{t}" for t in REPORT_TABLES]
    assert sorted(embedded) == sorted(expected)
    for path in expected:  # the very bytes of each file, with a caption
        caption, content = embedded[path]
        assert content == (ci_run.workdir / path).read_bytes(), path
        assert len(caption) > 200, path


def test_every_figure_is_a_png_with_an_svg_twin_that_parses(ci_run):
    figures = ci_run.workdir / "results/figures"
    for name in FIGURES:
        png = (figures / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, name
        root = ET.parse(figures / f"{name}.svg").getroot()
        assert root.tag == f"{SVG}svg", name
        assert float(root.get("width").removesuffix("pt")) > 300, name  # 4+ inches wide
        assert len(root.findall(f".//{SVG}path")) > 20, name  # axes, ticks, glyphs, data
    leftovers = [p.name for p in figures.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_accuracy_rows_ranges_and_zero_at_the_best_epoch(ci_run):
    table = ci_run.table("accuracy.csv")
    best = ci_run.table("best_snapshots.csv")
    attacks = list(ci_run.config["attacks"])
    expected = set()
    for regime, split in ci_run.product("regime", "split"):
        for epoch in range(1, ci_run.config["regimes"][regime]["epochs"] + 1):
            expected |= {(regime, split, epoch, s, "none")
                         for s in ("train", "validation", "test", "fail_subset")}
            expected |= {(regime, split, epoch, "adversarial", a) for a in attacks}
    got = list(zip(table.regime, table.split, table.epoch, table.eval_set, table.attack))
    assert len(got) == len(set(got)) and set(got) == expected
    assert table.accuracy.between(0, 1).all() and (table.n > 0).all()
    assert np.allclose(table.accuracy, table.n_correct / table.n)
    n_test = ci_run.config["dataset"]["subset"]["test"]
    assert (table[table.eval_set == "test"].n == n_test).all()
    for row in best.itertuples():
        history = pd.read_csv(ci_run.workdir / f"results/{ci_run.config['dataset']['name']}"
                              f"/lenet5/{row.regime}/split{row.split}/history.csv")
        assert history.test_accuracy.idxmax() + 1 == row.best_epoch  # earliest maximum
        at_best = table[(table.regime == row.regime) & (table.split == row.split)
                        & (table.epoch == row.best_epoch)]
        zero = at_best[at_best.eval_set.isin(["adversarial", "fail_subset"])]
        assert len(zero) == len(attacks) + 1 and (zero.accuracy == 0).all()
        test = at_best[at_best.eval_set == "test"].iloc[0]
        assert zero[zero.eval_set == "fail_subset"].n.iloc[0] == test.n - test.n_correct
    # the models learn: the last test accuracy is far above chance (0.1)
    last = table[(table.eval_set == "test") & (table.epoch == table.epoch.max())]
    assert last.accuracy.min() > 0.2


def test_lp_table_per_regime_and_attack(ci_run):
    summary = ci_run.table("distances_summary.csv")
    per_ae = ci_run.table("distances.csv")
    sets = ci_run.table("adversarial_sets.csv")
    assert set(zip(summary.regime, summary.attack)) == ci_run.product("regime", "attack")
    assert len(summary) == len(ci_run.product("regime", "attack"))
    convention = ci_run.config.get("distances", {}).get("l2_convention", "channels")
    assert (summary.l2_convention == convention).all()
    data = load_npz(next(ci_run.workdir.glob("results/*/data.npz")))
    height, width, channels = data["x_test"].shape[1:]
    for row in summary.itertuples():
        kept = sets[(sets.regime == row.regime) & (sets.attack == row.attack)]
        assert row.n == kept.n_success.sum() > 0
        ae = per_ae[(per_ae.regime == row.regime) & (per_ae.attack == row.attack)]
        assert np.isclose(row.l2_mean, ae.l2.mean()) and np.isclose(row.l2_std, ae.l2.std())
        assert 0 < row.l0_mean <= height * width and 0 < row.linf_mean <= 1
    fgsm = summary[summary.attack == "fgsm"]
    eps = ci_run.config["attacks"]["fgsm"]["eps"]
    # FGSM moves every value by eps (less only where clipped): L-inf is eps exactly,
    # and L2 is at most eps * sqrt(number of values) in its convention
    assert np.allclose(fgsm.linf_mean, eps, atol=1e-5) and (fgsm.linf_std < 1e-6).all()
    values = height * width * (channels if convention == "channels" else 1)
    assert (fgsm.l2_mean <= eps * np.sqrt(values) + 1e-4).all()
    # DeepFool looks for the smallest L2 step; FGSM takes a full L-inf step
    deepfool = summary[summary.attack == "deepfool"].set_index("regime").l2_mean
    assert (deepfool < fgsm.set_index("regime").l2_mean).all()


def test_deltas_and_their_welch_tests(ci_run):
    deltas = ci_run.table("delta_accuracy.csv")
    tests = ci_run.table("delta_tests.csv")
    table = ci_run.table("accuracy.csv")
    best = ci_run.table("best_snapshots.csv")
    n_sets = 4 + len(ci_run.config["attacks"])
    assert len(deltas) == len(ci_run.product("regime", "split")) * n_sets
    assert np.allclose(deltas.delta, deltas.accuracy_last - deltas.accuracy_best)
    merged = deltas.merge(best[["regime", "split", "best_epoch"]], on=["regime", "split"])
    for row in merged.itertuples():
        rows = table[(table.regime == row.regime) & (table.split == row.split)
                     & (table.eval_set == row.eval_set) & (table.attack == row.attack)]
        assert row.accuracy_best == rows[rows.epoch == row.best_epoch].accuracy.iloc[0]
        assert row.accuracy_last == rows[rows.epoch == rows.epoch.max()].accuracy.iloc[0]
        if row.eval_set in ("adversarial", "fail_subset"):
            assert row.accuracy_best == 0
    assert set(zip(tests.regime, tests.attack)) == ci_run.product("regime", "attack")
    assert len(tests) == len(ci_run.product("regime", "attack"))
    for row in tests.itertuples():
        of = deltas[deltas.regime == row.regime]
        test = of[of.eval_set == "test"].delta.to_numpy()
        adversarial = of[of.attack == row.attack].delta.to_numpy()
        if np.isnan(row.p_value):
            assert row.note != ""
            assert test.var() == 0 and adversarial.var() == 0
        else:
            assert 0 <= row.p_value <= 1 and row.note == ""
            expected = stats.ttest_ind(adversarial, test, equal_var=False)
            assert np.isclose(row.p_value, expected.pvalue)
            assert np.isclose(row.statistic, expected.statistic)


def test_knn_and_robustness_metric_tables(ci_run):
    knn = ci_run.table("knn_accuracy.csv")
    z = ci_run.config["knn"]["z"]
    assert sorted(knn.k.unique()) == list(range(1, z + 1, 2))
    at_z = knn[(knn.k == z) & knn.eval_set.isin(["adversarial", "fail_subset"])]
    assert len(at_z) == 2 * (1 + len(ci_run.config["attacks"]))
    # 0 by construction; an adversarial set may be empty (DeepFool's minimal CNN
    # perturbations rarely fool the K-NN on CIFAR-10), its accuracy then undefined
    assert (at_z[at_z.n > 0].accuracy == 0).all()
    assert at_z[at_z.n == 0].accuracy.isna().all()
    assert (at_z[at_z.eval_set == "fail_subset"].n > 0).all()
    assert at_z[at_z.eval_set == "adversarial"].n.sum() > 0
    assert (knn[(knn.k == 1) & (knn.eval_set == "train")].accuracy == 1).all()
    slope_tests = ci_run.table("knn_slope_tests.csv")
    last = slope_tests[slope_tests.j == z - 2]  # S_{Z-2} = A_{Z-2} / 0
    assert len(last) and last.p_value.isna().all() and (last.note != "").all()
    defined = slope_tests.p_value.dropna()
    assert defined.between(0, 1).all()

    metrics = ci_run.table("robustness_metrics.csv")
    spec = ci_run.config["robustness_metrics"]
    runs = ci_run.product("regime", "split")
    epochs = sum(ci_run.config["regimes"][r]["epochs"] for r, _ in runs)
    assert len(metrics) == epochs * len(spec["metrics"])
    assert (metrics.n_total == spec["n_points"]).all() and (metrics.n <= metrics.n_total).all()
    clever = metrics[metrics.metric == "clever_u"]
    radius = spec["metrics"]["clever_u"]["radius"]
    assert clever["mean"].between(0, radius).all()  # CLEVER is capped at its radius
    assert (metrics[metrics.metric == "loss_sensitivity"]["mean"] > 0).all()
