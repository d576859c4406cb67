"""benchmarks/paper_scale.py: the slice's config, reading the jobs' files and
the linear extrapolation to the whole protocol (issue 13, item 5). Fast: no
TensorFlow, no workflow run."""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def ps():
    spec = importlib.util.spec_from_file_location("paper_scale",
                                                  ROOT / "benchmarks" / "paper_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_scale"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_full_units_count_the_protocols_work(ps):
    full = ps.FULL
    assert ps.full_units("train_model", 6000) == 35 * 40000
    assert ps.full_units("craft_adversarial_set", 6000) == 6000
    # 35 snapshots x (train + validation + test + fail subset + 3 adversarial sets)
    assert ps.full_units("evaluate_snapshots", 6000) == 35 * (40000 + 10000 + 10000 + 4000 + 18000)
    assert ps.full_units("compute_robustness_metrics", 6000) == 35 * 100
    assert ps.full_units("select_best_snapshot", 6000) == 0
    assert full["splits"] * full["regimes"] == 10


def test_a_job_keeps_its_fixed_part_and_scales_its_work(ps):
    job = ps.Job("train_model", wall_s=40.0, work_s=30.0, units=3 * 40000)
    assert ps.scaled_job_seconds(job, 35 * 40000) == pytest.approx(10.0 + 30.0 * 35 / 3)
    # Without measured work a job is kept as it is.
    assert ps.scaled_job_seconds(ps.Job("make_splits", wall_s=4.0), 123) == 4.0
    assert ps.scaled_job_seconds(job, 0) == 40.0


def _slice_jobs(ps):
    jobs = [ps.Job("prepare_dataset", 20.0), ps.Job("make_splits", 5.0)]
    for regime in ("normal", "overfit"):
        jobs += [ps.Job("train_model", 40.0, 30.0, 3 * 40000),
                 ps.Job("select_best_snapshot", 1.0),
                 ps.Job("evaluate_snapshots", 12.0, 6.0, 3 * 61000),
                 ps.Job("compute_robustness_metrics", 25.0, 18.0, 3 * 10)]
        jobs += [ps.Job("craft_adversarial_set", 10.0, 5.0, 100) for _ in range(3)]
    return jobs


def test_extrapolation_counts_jobs_and_adds_them_up(ps):
    result = ps.extrapolate(_slice_jobs(ps), n_correct=6000, cores=2)
    rules = result["rules"]
    assert rules["train_model"]["jobs_full"] == 10
    assert rules["craft_adversarial_set"]["jobs_full"] == 30
    assert rules["make_splits"]["jobs_full"] == 1
    train = 10.0 + 30.0 * 35 / 3
    craft = 5.0 + 5.0 * 6000 / 100
    evaluate = 6.0 + 6.0 * (35 * (40000 + 10000 + 10000 + 4000 + 18000)) / (3 * 61000)
    metrics = 7.0 + 18.0 * 3500 / 30
    assert rules["train_model"]["per_job_full_s"] == pytest.approx(train)
    assert rules["craft_adversarial_set"]["total_full_s"] == pytest.approx(30 * craft)
    assert rules["compute_robustness_metrics"]["total_full_s"] == pytest.approx(10 * metrics)
    per_run = 10 * (train + 1.0 + evaluate + metrics) + 30 * craft
    assert result["per_run_total_s"] == pytest.approx(per_run)
    assert result["one_off_s"] == pytest.approx(25.0)
    assert result["cpu_total_s"] == pytest.approx(per_run + 25.0)
    chain = train + 1.0 + max(3 * craft + evaluate, metrics)
    assert result["chain_s"] == pytest.approx(chain)
    assert result["wall_s"] == pytest.approx(25.0 + max(per_run / 2, chain))
    # One core: everything in a row.
    assert ps.extrapolate(_slice_jobs(ps), 6000, 1)["wall_s"] == pytest.approx(25.0 + per_run)


def test_the_chain_bounds_the_wall_time_when_cores_abound(ps):
    result = ps.extrapolate(_slice_jobs(ps), n_correct=6000, cores=64)
    assert result["wall_s"] == pytest.approx(result["one_off_s"] + result["chain_s"])


LOGS = {
    "cifar10/lenet5/normal/split0/train_model.log": """\
2026-12-03 07:00:00,000 INFO TensorFlow 2.21.0 on CPU (1 threads)
2026-12-03 07:00:20,000 INFO epoch 1: train_loss=2.0
2026-12-03 07:00:30,500 INFO epoch 2: train_loss=1.9
2026-12-03 07:00:41,000 INFO epoch 3: train_loss=1.8
2026-12-03 07:00:43,000 INFO done in 43.0 s
""",
    "cifar10/lenet5/normal/split0/craft_adversarial_set_fgsm.log": """\
2026-12-03 07:01:00,000 INFO TensorFlow 2.21.0 on CPU (1 threads)
2026-12-03 07:01:05,000 INFO fgsm: attacking 100 of 4321 correctly classified test samples
2026-12-03 07:01:07,500 INFO fgsm: 98 of 100 AEs fool the best snapshot with a logit margin above 0 (success rate 0.980)
2026-12-03 07:01:08,000 INFO done in 8.0 s
""",
    "cifar10/lenet5/normal/split0/evaluate_snapshots.log": """\
2026-12-03 07:02:00,000 INFO evaluating 3 snapshots on 66000 samples
2026-12-03 07:02:06,000 INFO invariant holds: every adversarial set and the fail subset at accuracy 0
2026-12-03 07:02:07,000 INFO done in 9.0 s
2026-12-03 07:02:07,000 INFO warm interpreter child: peak RSS 1500 MiB, CPU 8.0 s
""",
    "cifar10/make_splits.log": "2026-12-03 06:59:00,000 INFO done in 3.5 s\n",
}


def test_jobs_are_read_from_logs_and_benchmark_files(ps, tmp_path):
    for name, text in LOGS.items():
        path = tmp_path / "results" / "logs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    bench = tmp_path / "results" / "benchmarks" / "cifar10/lenet5/normal/split0"
    bench.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bench / "train_model.tsv").write_text(header + "45.5\t0:00:45\t2100.5\t1\t1\t1\t0\t0\t90\t40\n")
    (bench / "craft_adversarial_set_fgsm.tsv").write_text(
        header + "9.0\t0:00:09\t900.0\t1\t1\t1\t0\t0\t90\t8\n")
    (bench / "evaluate_snapshots.tsv").write_text(header + "10.0\t0:00:10\t800\t1\t1\t1\t0\t0\t9\t9\n")
    jobs = {j.rule: j for j in ps.read_jobs(tmp_path, n_train=40000, metric_points=10)}
    assert set(jobs) == {"train_model", "craft_adversarial_set", "evaluate_snapshots",
                         "make_splits"}
    train = jobs["train_model"]
    assert train.wall_s == 45.5 and train.max_rss_mb == 2100.5
    assert train.extra["steady_epoch_s"] == pytest.approx(10.5)
    assert train.work_s == pytest.approx(3 * 10.5) and train.units == 3 * 40000
    craft = jobs["craft_adversarial_set"]
    assert (craft.work_s, craft.units) == (pytest.approx(2.5), 100)
    assert craft.extra == {"correct_at_best": 4321, "kept": 98}
    evaluate = jobs["evaluate_snapshots"]
    assert (evaluate.work_s, evaluate.units) == (pytest.approx(6.0), 3 * 66000)
    assert evaluate.max_rss_mb == 1500  # the warm child's own peak, larger than the waiter's
    assert jobs["make_splits"].wall_s == 3.5 and jobs["make_splits"].work_s == 0


def test_the_slice_config_is_the_papers_with_the_reductions(ps, tmp_path):
    from advfit.config import validate_config

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"):
        (folder / name).write_bytes(b"")
    args = Namespace(cifar=str(folder), train="5000", epochs=3, attacked="100",
                     metric_points=10, eval_batch=8192, attack_batch=1024)
    config = ps.slice_config(args)
    assert config["regimes"]["normal"]["epochs"] == config["regimes"]["overfit"]["epochs"] == 3
    assert config["regimes"]["overfit"]["learning_rate"] == 0.0024  # the paper's otherwise
    assert config["splits"] == {"method": "kfold", "n_splits": 5}
    assert config["attack_subset_size"] == 100
    assert config["robustness_metrics"]["n_points"] == 10
    assert config["robustness_metrics"]["metrics"]["clever_u"]["nb_batches"] == 500
    assert config["dataset"]["subset"] == {"train": 5000}
    assert config["evaluation"]["batch_size"] == 8192
    assert {spec["batch_size"] for spec in config["attacks"].values()} == {1024}
    validate_config(config)  # the workflow accepts it
    assert ps.targets(config) == [
        f"results/cifar10/lenet5/{r}/split0/{n}" for r in ("normal", "overfit")
        for n in ("accuracy.csv", "robustness_metrics.csv")]
    assert ps.n_train_of(args) == 4000
    assert ps.n_train_of(Namespace(train="all")) == 40000


def test_a_chunked_attack_is_timed_by_its_steady_chunks(ps, tmp_path):
    log = tmp_path / "craft_adversarial_set_cw_l2.log"
    log.write_text("""\
2026-12-03 07:01:00,000 INFO cw_l2_art: attacking 300 of 5000 correctly classified test samples
2026-12-03 07:01:12,000 INFO cw_l2_art: 128/300 images done (12.0 s)
2026-12-03 07:01:20,000 INFO cw_l2_art: 256/300 images done (20.0 s)
2026-12-03 07:01:23,000 INFO cw_l2_art: 300/300 images done (23.0 s)
2026-12-03 07:01:23,500 INFO cw_l2_art: 290 of 300 AEs fool the best snapshot with a logit margin above 0 (success rate 0.967)
""")
    work, units, extra = ps.work_from_log("craft_adversarial_set", log, 30.0)
    per_point = 11.0 / (300 - 128)  # the chunks after the first, which traces
    assert extra["steady_s_per_point"] == pytest.approx(per_point, abs=1e-4)
    assert (work, units) == (pytest.approx(per_point * 300), 300)


def test_cpu_clock_scales_the_work_by_the_jobs_cpu_share(ps):
    job = ps.Job("train_model", wall_s=40.0, work_s=30.0, units=120000, cpu_s=20.0, clock="cpu")
    assert (job.cost_s, job.work_cost_s) == (20.0, 15.0)
    assert ps.scaled_job_seconds(job, 240000) == pytest.approx(5.0 + 30.0)
    wall = ps.Job("train_model", wall_s=40.0, work_s=30.0, units=120000, cpu_s=20.0)
    assert (wall.cost_s, wall.work_cost_s) == (40.0, 30.0)
