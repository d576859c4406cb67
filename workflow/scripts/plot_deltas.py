from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import read_table

    from advfit.report.plots import plot_delta_boxes, save_figure

    deltas = read_table(snakemake.input.deltas)
    tests = read_table(snakemake.input.tests)
    save_figure(plot_delta_boxes(deltas, tests), snakemake.output.png, snakemake.output.svg)
