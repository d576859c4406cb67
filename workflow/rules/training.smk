rule make_training_labels:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
    output:
        f"{RUN}/train_labels.npz",
    log:
        f"{RUN_LOG}/make_training_labels.log",
    conda:
        ENV
    params:
        # Only the regime's label_noise: other keys (epochs, ...) keep the labels.
        label_noise=lambda w: config["regimes"][w.regime].get("label_noise", 0.0),
        seed=config["seed"],
    script:
        "../scripts/make_training_labels.py"


rule train_model:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        train_labels=f"{RUN}/train_labels.npz",
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
