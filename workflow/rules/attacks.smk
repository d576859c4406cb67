

rule craft_adversarial_set:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        snapshots=f"{RUN}/snapshots",
        best=f"{RUN}/best_snapshot.json",
    output:
        f"{RUN}/adversarial/{{attack}}.npz",
    log:
        f"{RUN_LOG}/craft_adversarial_set_{{attack}}.log",
    benchmark:
        f"{RUN_BENCH}/craft_adversarial_set_{{attack}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        attack=lambda w: config["attacks"][w.attack],
        attack_source=lambda w: ATTACK_SOURCES.get(w.attack),
        # The limit of one plugin call; CallLimit: changing it reruns nothing.
        plugin_timeout=CallLimit(config["limits"]["plugin_timeout_s"]),
        model=config["model"],
        subset_size=config["attack_subset_size"],
        seed=config["seed"],
        # The evaluation's batches: the kept AEs fool M as evaluate_snapshots scores them.
        batch_size=config["evaluation"]["batch_size"],
        min_margin=config["adversarial"]["min_margin"],
    script:
        "../scripts/craft_adversarial_set.py"
