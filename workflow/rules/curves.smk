# Robustness curves (issue 23): rules compute_robustness_curves, collect_robustness_curves,
# plot_robustness_curves. Outputs listed in common.smk curves_outputs().


rule compute_robustness_curves:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
        best=f"{RUN}/best_snapshot.json",
    output:
        table=f"{RUN}/curves.csv",
        arrays=f"{RUN}/curves.npz",
    log:
        f"{RUN_LOG}/compute_robustness_curves.log",
    benchmark:
        f"{RUN_BENCH}/compute_robustness_curves.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=480,
    params:
        spec=config.get("robustness_curves"),
        model=config["model"],
        # the fixed-eps attack that cross-checks the curves (None: no cross-check)
        check=config["attacks"].get(
            (config.get("robustness_curves") or {}).get("check_attack")
        ),
        check_source=ATTACK_SOURCES.get(
            (config.get("robustness_curves") or {}).get("check_attack")
        ),
        # The limit of one plugin call; CallLimit: changing it reruns nothing.
        plugin_timeout=CallLimit(config["limits"]["plugin_timeout_s"]),
        seed=config["seed"],
        batch_size=config["evaluation"]["batch_size"],
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/compute_robustness_curves.py"


rule collect_robustness_curves:
    input:
        per_run(f"{RUN}/curves.csv"),
    output:
        report(
            "results/tables/whitebox_curves.csv",
            caption="../report/whitebox_curves.rst",
            **report_section("Two views of robustness"),
        ),
    log:
        "results/logs/collect_robustness_curves.log",
    conda:
        ENV
    script:
        "../scripts/collect_robustness_curves.py"


rule plot_robustness_curves:
    input:
        "results/tables/whitebox_curves.csv",
    output:
        figure=report(
            "results/figures/whitebox_curves.png",
            caption="../report/whitebox_curves.rst",
            **report_section("Two views of robustness"),
        ),
        figure_svg="results/figures/whitebox_curves.svg",
    log:
        "results/logs/plot_robustness_curves.log",
    conda:
        ENV
    params:
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/plot_robustness_curves.py"
