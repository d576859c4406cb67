"""End to end: the real workflow on a tiny digits config, then its invariants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from advfit.runtime.io import load_npz, read_table

from conftest import run_snakemake

TINY = {
    "seed": 7,
    "dataset": {"name": "digits"},
    "model": {"name": "lenet5"},
    "splits": {"method": "kfold", "n_splits": 2},
    "regimes": {
        "normal": {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 32, "epochs": 3},
        "overfit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64, "epochs": 4,
                    "label_noise": 0.25},
    },
    "best_snapshot": {"metric": "val_accuracy"},
    "attacks": {"fgsm": {"eps": 0.2}, "pgd": {"eps": 0.2, "eps_iter": 0.04, "nb_iter": 5}},
    "attack_subset_size": 60,
    "knn": {"z": 5, "regime": "normal", "algorithm": "kd_tree"},  # clean labels, as by default
}


def snakemake(workdir: Path, *args: str):
    return run_snakemake(workdir, *args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    done = snakemake(workdir)
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir


def _runs():
    return [(r, s) for r in TINY["regimes"] for s in range(TINY["splits"]["n_splits"])]


def _run_dir(workdir, regime, split):
    return workdir / f"results/digits/lenet5/{regime}/split{split}"


@pytest.mark.e2e
def test_every_row_is_present(tiny_run):
    table = read_table(tiny_run / "results/tables/accuracy.csv")
    expected = set()
    for regime, split in _runs():
        for epoch in range(1, TINY["regimes"][regime]["epochs"] + 1):
            for eval_set in ("train", "validation", "test", "fail_subset"):
                expected.add((regime, split, epoch, eval_set, "none"))
            for attack in TINY["attacks"]:
                expected.add((regime, split, epoch, "adversarial", attack))
    got = set(zip(table.regime, table.split, table.epoch, table.eval_set, table.attack))
    assert got == expected
    assert len(table) == len(expected)  # no duplicates
    assert (table.dataset == "digits").all() and (table.model == "lenet5").all()
    assert table.accuracy.between(0, 1).all()


@pytest.mark.e2e
def test_sizes_match_the_artefacts_and_best_epoch_is_zero(tiny_run):
    table = read_table(tiny_run / "results/tables/accuracy.csv")
    best = pd.read_csv(tiny_run / "results/tables/best_snapshots.csv")
    for regime, split in _runs():
        run = _run_dir(tiny_run, regime, split)
        rows = table[(table.regime == regime) & (table.split == split)]
        split_npz = load_npz(tiny_run / f"results/digits/splits/split{split}.npz")
        sizes = {("train", "none"): len(split_npz["train"]),
                 ("validation", "none"): len(split_npz["validation"]),
                 ("test", "none"): len(split_npz["test"]),
                 ("fail_subset", "none"): len(load_npz(run / "fail_subset.npz")["source_index"])}
        for attack in TINY["attacks"]:
            adv = load_npz(run / f"adversarial/{attack}.npz")
            sizes[("adversarial", attack)] = len(adv["x"])
            assert int(adv["n_success"]) == len(adv["x"]) <= int(adv["n_tried"]) <= 60
        for (eval_set, attack), n in sizes.items():
            ns = rows[(rows.eval_set == eval_set) & (rows.attack == attack)].n.unique()
            assert ns.tolist() == [n], (regime, split, eval_set, attack)
        epoch = int(best[(best.regime == regime) & (best.split == split)].best_epoch.iloc[0])
        at_best = rows[rows.epoch == epoch]
        targeted = at_best[at_best.eval_set.isin(["adversarial", "fail_subset"]) & (at_best.n > 0)]
        assert len(targeted) >= 2
        assert (targeted.accuracy == 0).all()
        # the fail subset is the complement of the test set's hits at the best epoch
        test = at_best[at_best.eval_set == "test"].iloc[0]
        assert sizes[("fail_subset", "none")] == test.n - test.n_correct
        history = pd.read_csv(run / "history.csv")
        assert history.val_accuracy.idxmax() + 1 == epoch


@pytest.mark.e2e
def test_label_noise_is_recorded_and_the_train_rows_use_the_trained_labels(tiny_run):
    from advfit import runtime

    runtime.configure(1)
    from advfit.data.datasets import PooledData
    from advfit.runtime.io import file_sha256, load_json
    from advfit.models.label_noise import load_training_labels
    from advfit.runtime.layout import snapshot_name
    from advfit.models.architectures import build_model

    data = PooledData(load_npz(tiny_run / "results/digits/data.npz"))
    table = read_table(tiny_run / "results/tables/accuracy.csv")
    model = build_model("lenet5", data.x.shape[1:], data.n_classes)
    for regime, split in _runs():
        run = _run_dir(tiny_run, regime, split)
        index = load_npz(tiny_run / f"results/digits/splits/split{split}.npz")["train"]
        x, y = data.take(index)
        labels, record = load_training_labels(run / "train_labels.npz", index, y)
        # training.json names the labels file it trained on
        assert load_json(run / "training.json")["train_labels_sha256"] == file_sha256(
            run / "train_labels.npz")
        fraction = TINY["regimes"][regime].get("label_noise", 0)
        assert record["n"] == len(index) and record["fraction"] == fraction
        assert record["n_flipped"] == round(fraction * len(index)) == (labels != y).sum()
        epoch = TINY["regimes"][regime]["epochs"]
        model.load_weights(run / "snapshots" / snapshot_name(epoch))
        predicted = model.predict(x, verbose=0).argmax(axis=1)
        row = table[(table.regime == regime) & (table.split == split) & (table.epoch == epoch)
                    & (table.eval_set == "train")].iloc[0]
        assert row.n_correct == (predicted == labels).sum()
        if record["n_flipped"]:
            assert row.n_correct != (predicted == y).sum()


@pytest.mark.e2e
def test_summary_distances_and_figures(tiny_run):
    summary = read_table(tiny_run / "results/tables/accuracy_summary.csv")
    assert (summary.n_splits == 2).all()
    distances = pd.read_csv(tiny_run / "results/tables/distances_summary.csv")
    assert set(distances.attack) == {"fgsm", "pgd"}
    assert (distances.linf_mean <= 0.2 + 1e-6).all() and (distances.l2_convention == "channels").all()
    for figure in ("accuracy_vs_epoch.png", "asr_vs_epoch.png"):
        data = (tiny_run / "results/figures" / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    leftovers = [p for p in (tiny_run / "results").rglob("*") if ".tmp" in p.name or p.name.endswith(".partial")]
    assert leftovers == []


@pytest.mark.e2e
def test_knn_experiment_invariants(tiny_run):
    table = read_table(tiny_run / "results/tables/knn_accuracy.csv")
    got = set(zip(table.split, table.k, table.eval_set, table.attack))
    sets = [("train", "none"), ("test", "none"), ("fail_subset", "none"),
            ("adversarial", "fgsm"), ("adversarial", "pgd")]
    assert got == {(s, k, e, a) for s in (0, 1) for k in (1, 3, 5) for e, a in sets}
    z_rows = table[(table.k == 5) & table.eval_set.isin(["adversarial", "fail_subset"])]
    assert (z_rows.n > 0).all() and (z_rows.accuracy == 0).all()  # 0 by construction
    assert (table[(table.k == 1) & (table.eval_set == "train")].accuracy == 1).all()
    for split in (0, 1):
        knn_dir = tiny_run / f"results/digits/knn/split{split}"
        train_n = len(load_npz(tiny_run / f"results/digits/splits/split{split}.npz")["train"])
        assert table[(table.split == split) & (table.eval_set == "train")].n.unique().tolist() == [train_n]
        for attack in ("fgsm", "pgd"):
            adv = load_npz(knn_dir / f"adversarial/{attack}.npz")
            rows = table[(table.split == split) & (table.attack == attack)]
            assert rows.n.unique().tolist() == [len(adv["x"])] == [int(adv["n_kept"])]
            assert int(adv["n_tried"]) <= 60
    slopes = pd.read_csv(tiny_run / "results/tables/knn_slopes.csv")
    assert sorted(slopes.j.unique()) == [1, 3]
    # A_5 = 0 on both sets: S_3 = A_3 / A_5 is infinite (or 0/0, undefined), never a crash
    s3 = slopes[(slopes.j == 3) & slopes.eval_set.isin(["adversarial", "fail_subset"])]
    assert len(s3) == 2 * 3
    assert (s3.is_infinite | s3.is_undefined).all()
    tests = read_table(tiny_run / "results/tables/knn_slope_tests.csv")
    assert set(tests.test) == {"welch", "paired"} and len(tests) == 2 * 2 * 2
    assert (tests[tests.j == 3].note != "").all()
    for figure in ("knn_train_test_vs_k", "knn_accuracy_vs_k", "knn_slope_pvalues"):
        assert (tiny_run / f"results/figures/{figure}.png").stat().st_size > 10_000


@pytest.mark.e2e
def test_html_report_holds_every_figure(tiny_run):
    done = snakemake(tiny_run, "--report", "results/report.html")
    assert done.returncode == 0, done.stderr[-3000:]
    html = (tiny_run / "results/report.html").read_text(errors="replace")
    figures = sorted(p.name for p in (tiny_run / "results/figures").glob("*.png"))
    assert len(figures) == 7
    for name in figures:
        assert name in html, name


@pytest.mark.e2e
def test_every_figure_is_byte_identical_when_drawn_again(tiny_run):
    figures = tiny_run / "results/figures"
    before = {p.name: p.read_bytes() for p in figures.iterdir()}
    assert len(before) == 14  # 7 figures, PNG and SVG
    done = snakemake(tiny_run, "--forcerun", "plot_accuracy", "plot_asr", "plot_deltas",
                     "plot_distances", "plot_knn")
    assert done.returncode == 0, done.stderr[-3000:]
    after = {p.name: p.read_bytes() for p in figures.iterdir()}
    assert after.keys() == before.keys()
    assert [name for name in before if before[name] != after[name]] == []


@pytest.mark.e2e
def test_rerun_has_nothing_to_do_and_one_attack_change_reruns_only_it(tiny_run):
    again = snakemake(tiny_run, "--dry-run")
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
    changed = {**TINY, "attacks": {**TINY["attacks"], "fgsm": {"eps": 0.15}}}
    (tiny_run / "config.yaml").write_text(yaml.safe_dump(changed))
    try:
        plan = snakemake(tiny_run, "--dry-run", "--quiet", "rules")
        assert plan.returncode == 0, plan.stderr
        out = plan.stdout
        counts = dict(line.split()[:2] for line in out.splitlines()
                      if len(line.split()) == 2 and line.split()[1].isdigit())
        assert counts.get("craft_adversarial_set") == "4"  # fgsm only: 2 regimes x 2 splits
        assert "train_model" not in counts and "select_best_snapshot" not in counts
        assert counts.get("evaluate_snapshots") == "4"
    finally:
        (tiny_run / "config.yaml").write_text(yaml.safe_dump(TINY))


@pytest.mark.e2e
def test_bad_config_fails_before_any_job(tmp_path):
    bad = {**TINY, "regimes": {"normal": {**TINY["regimes"]["normal"], "epochs": 0}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    done = snakemake(tmp_path)
    assert done.returncode != 0
    assert "config key 'regimes.normal.epochs'" in done.stderr + done.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.e2e
def test_paired_tests_rest_on_the_counts_of_the_accuracy_table(tiny_run):
    """McNemar's counts come from the per-example correctness that gives accuracy.csv."""
    from advfit.statistics.paired import check_against_accuracy

    accuracy = read_table(tiny_run / "results/tables/accuracy.csv")
    best = read_table(tiny_run / "results/tables/best_snapshots.csv")
    paired = read_table(tiny_run / "results/tables/paired_tests.csv")
    for regime, split in _runs():
        correctness = load_npz(_run_dir(tiny_run, regime, split) / "correctness.npz")
        run = accuracy[(accuracy.regime == regime) & (accuracy.split == split)]
        assert check_against_accuracy(correctness, run) == len(run)  # every row, every epoch
        m = int(best[(best.regime == regime) & (best.split == split)].best_epoch.item())
        last = TINY["regimes"][regime]["epochs"]
        rows = paired[(paired.regime == regime) & (paired.split == str(split))]
        assert set(rows.eval_set) == {"test", "fail_subset", "adversarial"}
        for row in rows.itertuples():
            at = run[(run.eval_set == row.eval_set) & (run.attack == row.attack)]
            assert (row.epoch_a, row.epoch_b) == (m, last)
            assert row.n_correct_a == at[at.epoch == m].n_correct.item()
            assert row.n_correct_b == at[at.epoch == last].n_correct.item()
            assert row.n_correct_b - row.n_correct_a == row.gained - row.lost
        adversarial = rows[rows.eval_set == "adversarial"]
        assert (adversarial.n_correct_a == 0).all()  # accuracy 0 at M by construction
    pooled = paired[paired.test == "mcnemar_pooled_exact"]
    assert len(pooled) == 2 * 4  # regimes x (test, fail subset, fgsm, pgd)
    summary = read_table(tiny_run / "results/tables/accuracy_summary.csv")
    assert ((summary.t_low <= summary.accuracy_mean + 1e-12)
            & (summary.accuracy_mean <= summary.t_high + 1e-12)).all()
    tests = read_table(tiny_run / "results/tables/delta_tests.csv")
    assert {"p_holm", "delta_difference_low", "runs_needed", "power_note"} <= set(tests.columns)


@pytest.mark.e2e
@pytest.mark.parametrize("section,key", [
    ({"statistics": {"confidence": 1.5}}, "statistics.confidence"),
    ({"robustness_metrics": {"n_points": 5, "clever_repeats": 0,
                             "metrics": {"clever_u": {}}}}, "robustness_metrics.clever_repeats"),
])
def test_bad_statistics_config_fails_before_any_job(tmp_path, section, key):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**TINY, **section}))
    done = snakemake(tmp_path)
    assert done.returncode != 0
    assert f"config key '{key}'" in done.stderr + done.stdout
    assert not (tmp_path / "results").exists()
