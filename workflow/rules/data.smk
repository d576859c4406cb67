rule fetch_dataset:
    input:
        dataset_source_input(),
    output:
        "results/{dataset}/source.json",
    log:
        "results/logs/{dataset}/fetch_dataset.log",
    conda:
        ENV
    params:
        spec=config["dataset"],
        cache="resources/datasets",
    script:
        "../scripts/fetch_dataset.py"


rule prepare_dataset:
    input:
        source=prepare_dataset_input(),
    output:
        "results/{dataset}/data.npz",
    log:
        "results/logs/{dataset}/prepare_dataset.log",
    benchmark:
        "results/benchmarks/{dataset}/prepare_dataset.tsv"
    conda:
        ENV
    params:
        spec=config["dataset"],
        # A changed layout reruns this rule (Snakemake's params trigger).
        layout=PREPARED_LAYOUT,
    script:
        "../scripts/prepare_dataset.py"


rule make_splits:
    input:
        "results/{dataset}/data.npz",
    output:
        expand("results/{{dataset}}/splits/split{split}.npz", split=ALL_SPLITS),
    log:
        "results/logs/{dataset}/make_splits.log",
    conda:
        ENV
    params:
        splits=SPLIT_SPEC,
        seed=config["seed"],
    script:
        "../scripts/make_splits.py"
