rule attack_snapshots:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
        best=f"{RUN}/best_snapshot.json",
    output:
        table=f"{RUN}/whitebox/{{attack}}.csv",
        arrays=f"{RUN}/whitebox/{{attack}}.npz",
    log:
        f"{RUN_LOG}/attack_snapshots_{{attack}}.log",
    benchmark:
        f"{RUN_BENCH}/attack_snapshots_{{attack}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=480,
    params:
        spec=config.get("snapshot_attacks"),
        model=config["model"],
        attack=lambda w: config["attacks"][w.attack],
        attack_source=lambda w: ATTACK_SOURCES.get(w.attack),
        # The limit of one plugin call; CallLimit: changing it reruns nothing.
        plugin_timeout=CallLimit(config["limits"]["plugin_timeout_s"]),
        seed=config["seed"],
        batch_size=config["evaluation"]["batch_size"],
        l2_convention=config["distances"]["l2_convention"],
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/attack_snapshots.py"


rule evaluate_transfer_matrix:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
        best=f"{RUN}/best_snapshot.json",
        adversarial=f"{RUN}/adversarial/{{attack}}.npz",
    output:
        table=f"{RUN}/transfer/{{attack}}.csv",
        arrays=f"{RUN}/transfer/{{attack}}.npz",
    log:
        f"{RUN_LOG}/evaluate_transfer_matrix_{{attack}}.log",
    benchmark:
        f"{RUN_BENCH}/evaluate_transfer_matrix_{{attack}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=480,
    params:
        spec=config.get("transfer_matrix"),
        model=config["model"],
        attack=lambda w: config["attacks"][w.attack],
        attack_source=lambda w: ATTACK_SOURCES.get(w.attack),
        # The limit of one plugin call; CallLimit: changing it reruns nothing.
        plugin_timeout=CallLimit(config["limits"]["plugin_timeout_s"]),
        subset_size=config["attack_subset_size"],
        seed=config["seed"],
        batch_size=config["evaluation"]["batch_size"],
        min_margin=config["adversarial"]["min_margin"],
    script:
        "../scripts/evaluate_transfer_matrix.py"


rule collect_whitebox:
    input:
        whitebox=whitebox_tables(),
        arrays=whitebox_arrays(),
        accuracy="results/tables/accuracy.csv",
        best="results/tables/best_snapshots.csv",
    output:
        table=report(
            "results/tables/whitebox.csv",
            caption="../report/whitebox.rst",
            **report_section("Two views of robustness"),
        ),
        summary=report(
            "results/tables/whitebox_summary.csv",
            caption="../report/whitebox_summary.rst",
            **report_section("Two views of robustness"),
        ),
        tests=report(
            "results/tables/delta_tests_by_view.csv",
            caption="../report/delta_tests_by_view.rst",
            **report_section("Two views of robustness"),
        ),
        figure=report(
            "results/figures/transfer_vs_whitebox.png",
            caption="../report/transfer_vs_whitebox.rst",
            **report_section("Two views of robustness"),
        ),
        figure_svg="results/figures/transfer_vs_whitebox.svg",
        # wall time: a benchmark, not a result (it changes from run to run)
        cost="results/benchmarks/whitebox_cost.csv",
    log:
        "results/logs/collect_whitebox.log",
    conda:
        ENV
    params:
        alternative=config["statistics"]["alternative"],
        confidence=config["statistics"]["confidence"],
        # the cost table's anchor: the view's first attack
        anchor=SNAPSHOT_ATTACKS[0] if SNAPSHOT_ATTACKS else None,
    script:
        "../scripts/collect_whitebox.py"


rule collect_transfer_matrix:
    input:
        transfer_tables(),
    output:
        table=report(
            "results/tables/transfer_matrix.csv",
            caption="../report/transfer_matrix_table.rst",
            **report_section("Two views of robustness"),
        ),
        figure=report(
            "results/figures/transfer_matrix.png",
            caption="../report/transfer_matrix.rst",
            **report_section("Two views of robustness"),
        ),
        figure_svg="results/figures/transfer_matrix.svg",
    log:
        "results/logs/collect_transfer_matrix.log",
    conda:
        ENV
    script:
        "../scripts/collect_transfer_matrix.py"
