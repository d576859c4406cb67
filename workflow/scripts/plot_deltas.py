from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.plots import plot_delta_boxes, save_figure

    deltas = pd.read_csv(snakemake.input.deltas, keep_default_na=False)
    tests = pd.read_csv(snakemake.input.tests, keep_default_na=False)
    tests["p_value"] = pd.to_numeric(tests.p_value, errors="coerce")
    save_figure(plot_delta_boxes(deltas, tests), snakemake.output[0])
