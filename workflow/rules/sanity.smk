# Gradient-masking flags (issue 23): rules check_gradient_masking, collect_sanity_flags.
# Outputs listed in common.smk sanity_outputs().


rule check_gradient_masking:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
        best=f"{RUN}/best_snapshot.json",
    output:
        table=f"{RUN}/sanity.csv",
    log:
        f"{RUN_LOG}/check_gradient_masking.log",
    benchmark:
        f"{RUN_BENCH}/check_gradient_masking.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=480,
    params:
        spec=config.get("sanity_checks"),
        model=config["model"],
        seed=config["seed"],
        batch_size=config["evaluation"]["batch_size"],
    script:
        "../scripts/check_gradient_masking.py"


rule collect_sanity_flags:
    input:
        per_run(f"{RUN}/sanity.csv"),
    output:
        table=report(
            "results/tables/sanity_flags.csv",
            caption="../report/sanity_flags.rst",
            **report_section("Two views of robustness"),
        ),
    log:
        "results/logs/collect_sanity_flags.log",
    conda:
        ENV
    script:
        "../scripts/collect_sanity_flags.py"
