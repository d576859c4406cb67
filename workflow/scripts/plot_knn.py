from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table

    from advfit.report.plots import (plot_knn_accuracy_vs_k, plot_knn_slope_pvalues,
                                     plot_knn_train_test_vs_k, save_figure)

    table = read_table(snakemake.input.accuracy)
    tests = read_table(snakemake.input.tests)
    save_figure(plot_knn_train_test_vs_k(table, snakemake.params.confidence), snakemake.output.train_test,
                snakemake.output.train_test_svg)
    save_figure(plot_knn_accuracy_vs_k(table, snakemake.params.confidence), snakemake.output.sets,
                snakemake.output.sets_svg)
    save_figure(plot_knn_slope_pvalues(tests), snakemake.output.pvalues,
                snakemake.output.pvalues_svg)
