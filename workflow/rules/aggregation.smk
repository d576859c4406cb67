rule collect_accuracy:
    input:
        accuracy=per_run(f"{RUN}/accuracy.csv"),
        best=per_run(f"{RUN}/best_snapshot.json"),
    output:
        accuracy="results/tables/accuracy.csv",
        summary=report(
            "results/tables/accuracy_summary.csv",
            caption="../report/accuracy_summary.rst",
            **report_section("CNN experiment"),
        ),
        best=report(
            "results/tables/best_snapshots.csv",
            caption="../report/best_snapshots.rst",
            **report_section("CNN experiment"),
        ),
        intervals=report(
            "results/tables/accuracy_intervals.csv",
            caption="../report/accuracy_intervals.rst",
            **report_section("CNN experiment"),
        ),
    log:
        "results/logs/collect_accuracy.log",
    conda:
        ENV
    params:
        runs=run_keys(),
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/collect_accuracy.py"


rule tabulate_adversarial_sets:
    input:
        data=f"results/{DATASET}/data.npz",
        adversarial=adversarial_sets(),
    output:
        sets=report(
            "results/tables/adversarial_sets.csv",
            caption="../report/adversarial_sets.rst",
            **report_section("CNN experiment"),
        ),
        distances="results/tables/distances.csv",
        summary=report(
            "results/tables/distances_summary.csv",
            caption="../report/distances_summary.rst",
            **report_section("CNN experiment"),
        ),
    log:
        "results/logs/tabulate_adversarial_sets.log",
    conda:
        ENV
    params:
        sets=adversarial_keys(),
        l2_convention=config["distances"]["l2_convention"],
        statistics=config["statistics"],
        seed=config["seed"],
    script:
        "../scripts/tabulate_adversarial_sets.py"


rule plot_accuracy:
    input:
        accuracy="results/tables/accuracy.csv",
        best="results/tables/best_snapshots.csv",
    output:
        png=report(
            "results/figures/accuracy_vs_epoch.png",
            caption="../report/accuracy_vs_epoch.rst",
            **report_section("CNN experiment"),
        ),
        svg="results/figures/accuracy_vs_epoch.svg",
    log:
        "results/logs/plot_accuracy.log",
    conda:
        ENV
    params:
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/plot_accuracy.py"


rule plot_asr:
    input:
        accuracy="results/tables/accuracy.csv",
        best="results/tables/best_snapshots.csv",
    output:
        png=report(
            "results/figures/asr_vs_epoch.png",
            caption="../report/asr_vs_epoch.rst",
            **report_section("CNN experiment"),
        ),
        svg="results/figures/asr_vs_epoch.svg",
    log:
        "results/logs/plot_asr.log",
    conda:
        ENV
    params:
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/plot_asr.py"


rule analyse_deltas:
    input:
        accuracy="results/tables/accuracy.csv",
        best="results/tables/best_snapshots.csv",
    output:
        deltas=report(
            "results/tables/delta_accuracy.csv",
            caption="../report/delta_accuracy_table.rst",
            **report_section("CNN experiment"),
        ),
        tests=report(
            "results/tables/delta_tests.csv",
            caption="../report/delta_tests.rst",
            **report_section("CNN experiment"),
        ),
    log:
        "results/logs/analyse_deltas.log",
    conda:
        ENV
    params:
        confidence=config["statistics"]["confidence"],
        alternative=config["statistics"]["alternative"],
    script:
        "../scripts/analyse_deltas.py"


rule plot_deltas:
    input:
        deltas="results/tables/delta_accuracy.csv",
        tests="results/tables/delta_tests.csv",
    output:
        png=report(
            "results/figures/delta_accuracy.png",
            caption="../report/delta_accuracy.rst",
            **report_section("CNN experiment"),
        ),
        svg="results/figures/delta_accuracy.svg",
    log:
        "results/logs/plot_deltas.log",
    conda:
        ENV
    script:
        "../scripts/plot_deltas.py"


rule plot_distances:
    input:
        distances="results/tables/distances.csv",
    output:
        png=report(
            "results/figures/l2_distribution.png",
            caption="../report/l2_distribution.rst",
            **report_section("CNN experiment"),
        ),
        svg="results/figures/l2_distribution.svg",
    log:
        "results/logs/plot_distances.log",
    conda:
        ENV
    script:
        "../scripts/plot_distances.py"


rule paired_tests:
    input:
        accuracy="results/tables/accuracy.csv",
        correctness=per_run(f"{RUN}/correctness.npz"),
    output:
        tests=report(
            "results/tables/paired_tests.csv",
            caption="../report/paired_tests.rst",
            **report_section("CNN experiment"),
        ),
    log:
        "results/logs/paired_tests.log",
    conda:
        ENV
    params:
        runs=run_keys(),
        statistics=config["statistics"],
    script:
        "../scripts/paired_tests.py"
