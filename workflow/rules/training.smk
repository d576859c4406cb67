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


# best_snapshot.metric val_robust_accuracy only (Rice et al. 2020): every k-th snapshot
# and the last attacked on one seeded sample of the split's validation part, after
# training (the same numbers as Rice et al.'s evaluation during training).
rule attack_validation_snapshots:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
    output:
        f"{RUN}/validation_robust.csv",
    log:
        f"{RUN_LOG}/attack_validation_snapshots.log",
    benchmark:
        f"{RUN_BENCH}/attack_validation_snapshots.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        attack_name=VALIDATION_ATTACK,
        n_points=config["best_snapshot"].get("n_points"),
        every=config["best_snapshot"].get("every"),
        model=config["model"],
        attack=lambda w: config["attacks"][VALIDATION_ATTACK],
        attack_source=lambda w: ATTACK_SOURCES.get(VALIDATION_ATTACK),
        # The limit of one plugin call; CallLimit: changing it reruns nothing.
        plugin_timeout=CallLimit(config["limits"]["plugin_timeout_s"]),
        seed=config["seed"],
        batch_size=config["evaluation"]["batch_size"],
        l2_convention=config["distances"]["l2_convention"],
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/attack_validation_snapshots.py"


rule select_best_snapshot:
    input:
        history=f"{RUN}/history.csv",
        # val_robust_accuracy: the run's validation_robust.csv; nothing else otherwise
        robust=best_snapshot_input(),
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
