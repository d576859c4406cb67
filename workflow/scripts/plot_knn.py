from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.plots import (plot_knn_accuracy_vs_k, plot_knn_slope_pvalues,
                              plot_knn_train_test_vs_k, save_figure)

    table = pd.read_csv(snakemake.input.accuracy, keep_default_na=False)
    tests = pd.read_csv(snakemake.input.tests, keep_default_na=False)
    save_figure(plot_knn_train_test_vs_k(table), snakemake.output.train_test)
    save_figure(plot_knn_accuracy_vs_k(table), snakemake.output.sets)
    save_figure(plot_knn_slope_pvalues(tests), snakemake.output.pvalues)
