rule classify_test_with_knn:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
    output:
        f"{KNN}/test_predictions.npz",
    log:
        f"{KNN_LOG}/classify_test_with_knn.log",
    benchmark:
        f"{KNN_BENCH}/classify_test_with_knn.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        knn=config.get("knn"),
    script:
        "../scripts/classify_test_with_knn.py"


rule craft_knn_adversarial_set:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        test_predictions=f"{KNN}/test_predictions.npz",
        snapshots=knn_cnn_run("snapshots"),
        best=knn_cnn_run("best_snapshot.json"),
    output:
        f"{KNN}/adversarial/{{attack}}.npz",
    log:
        f"{KNN_LOG}/craft_knn_adversarial_set_{{attack}}.log",
    benchmark:
        f"{KNN_BENCH}/craft_knn_adversarial_set_{{attack}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        knn=config.get("knn"),
        model=config["model"],
        attack=lambda w: config["attacks"][w.attack],
        attack_source=lambda w: ATTACK_SOURCES.get(w.attack),
        # The limit of one plugin call; CallLimit: changing it reruns nothing.
        plugin_timeout=CallLimit(config["limits"]["plugin_timeout_s"]),
        subset_size=config["attack_subset_size"],
        seed=config["seed"],
    script:
        "../scripts/craft_knn_adversarial_set.py"


rule evaluate_knn:
    input:
        data="results/{dataset}/data.npz",
        split="results/{dataset}/splits/split{split}.npz",
        test_predictions=f"{KNN}/test_predictions.npz",
        adversarial=expand(
            f"{KNN}/adversarial/{{attack}}.npz", attack=KNN_ATTACKS, allow_missing=True
        ),
    output:
        accuracy=f"{KNN}/accuracy.csv",
        fail_subset=f"{KNN}/fail_subset.npz",
    log:
        f"{KNN_LOG}/evaluate_knn.log",
    benchmark:
        f"{KNN_BENCH}/evaluate_knn.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        knn=config.get("knn"),
        attacks=KNN_ATTACKS,
    script:
        "../scripts/evaluate_knn.py"


rule collect_knn_accuracy:
    input:
        expand(f"{KNN}/accuracy.csv", dataset=DATASET, split=SPLITS),
    output:
        accuracy=report(
            "results/tables/knn_accuracy.csv",
            caption="../report/knn_accuracy.rst",
            **report_section("KNN experiment"),
        ),
        slopes="results/tables/knn_slopes.csv",
        tests=report(
            "results/tables/knn_slope_tests.csv",
            caption="../report/knn_slope_tests.rst",
            **report_section("KNN experiment"),
        ),
    log:
        "results/logs/collect_knn_accuracy.log",
    conda:
        ENV
    params:
        alternative=config["statistics"]["alternative"],
    script:
        "../scripts/collect_knn_accuracy.py"


rule plot_knn:
    input:
        accuracy="results/tables/knn_accuracy.csv",
        tests="results/tables/knn_slope_tests.csv",
    output:
        train_test=report(
            "results/figures/knn_train_test_vs_k.png",
            caption="../report/knn_train_test_vs_k.rst",
            **report_section("KNN experiment"),
        ),
        train_test_svg="results/figures/knn_train_test_vs_k.svg",
        sets=report(
            "results/figures/knn_accuracy_vs_k.png",
            caption="../report/knn_accuracy_vs_k.rst",
            **report_section("KNN experiment"),
        ),
        sets_svg="results/figures/knn_accuracy_vs_k.svg",
        pvalues=report(
            "results/figures/knn_slope_pvalues.png",
            caption="../report/knn_slope_pvalues.rst",
            **report_section("KNN experiment"),
        ),
        pvalues_svg="results/figures/knn_slope_pvalues.svg",
    log:
        "results/logs/plot_knn.log",
    conda:
        ENV
    params:
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/plot_knn.py"
