rule prepare_dataset:
    output:
        "results/{dataset}/data.npz",
    log:
        "results/logs/{dataset}/prepare_dataset.log",
    conda:
        ENV
    script:
        "../scripts/prepare_dataset.py"


rule make_splits:
    input:
        "results/{dataset}/data.npz",
    output:
        expand("results/{{dataset}}/splits/split{split}.npz", split=SPLITS),
    log:
        "results/logs/{dataset}/make_splits.log",
    conda:
        ENV
    params:
        splits=config["splits"],
        seed=config["seed"],
    script:
        "../scripts/make_splits.py"
