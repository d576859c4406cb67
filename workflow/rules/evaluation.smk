rule evaluate_snapshots:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
        best=f"{RUN}/best_snapshot.json",
        train_labels=f"{RUN}/train_labels.npz",
        adversarial=expand(
            f"{RUN}/adversarial/{{attack}}.npz", attack=ATTACKS, allow_missing=True
        ),
    output:
        accuracy=f"{RUN}/accuracy.csv",
        fail_subset=f"{RUN}/fail_subset.npz",
        correctness=f"{RUN}/correctness.npz",
    log:
        f"{RUN_LOG}/evaluate_snapshots.log",
    benchmark:
        f"{RUN_BENCH}/evaluate_snapshots.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        attacks=ATTACKS,
        model=config["model"],
        batch_size=config["evaluation"]["batch_size"],
        nonzero_at_best=config["evaluation"]["nonzero_at_best"],
    script:
        "../scripts/evaluate_snapshots.py"
