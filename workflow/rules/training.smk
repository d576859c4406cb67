rule train_model:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
    output:
        snapshots=directory(f"{RUN}/snapshots"),
        history=f"{RUN}/history.csv",
        meta=f"{RUN}/training.json",
    log:
        f"{RUN_LOG}/train_model.log",
    benchmark:
        f"{RUN_BENCH}/train_model.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        regime=lambda w: config["regimes"][w.regime],
        seed=config["seed"],
        model=config["model"],
        model_source=MODEL_SOURCE,
    script:
        "../scripts/train_model.py"


rule select_best_snapshot:
    input:
        history=f"{RUN}/history.csv",
    output:
        f"{RUN}/best_snapshot.json",
    log:
        f"{RUN_LOG}/select_best_snapshot.log",
    conda:
        ENV
    params:
        metric=config["best_snapshot"]["metric"],
    script:
        "../scripts/select_best_snapshot.py"
