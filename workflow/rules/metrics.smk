rule compute_robustness_metrics:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
    output:
        f"{RUN}/robustness_metrics.csv",
    log:
        f"{RUN_LOG}/compute_robustness_metrics.log",
    benchmark:
        f"{RUN_BENCH}/compute_robustness_metrics.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        spec=config.get("robustness_metrics"),
        model=config["model"],
        seed=config["seed"],
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/compute_robustness_metrics.py"


rule collect_robustness_metrics:
    input:
        per_run(f"{RUN}/robustness_metrics.csv"),
    output:
        table=report(
            "results/tables/robustness_metrics.csv",
            caption="../report/robustness_metrics_table.rst",
            **report_section("Robustness metrics"),
        ),
        figure=report(
            "results/figures/robustness_metrics.png",
            caption="../report/robustness_metrics.rst",
            **report_section("Robustness metrics"),
        ),
        figure_svg="results/figures/robustness_metrics.svg",
    log:
        "results/logs/collect_robustness_metrics.log",
    conda:
        ENV
    script:
        "../scripts/collect_robustness_metrics.py"
