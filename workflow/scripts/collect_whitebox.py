from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    import pandas as pd

    from advfit.runtime.io import array_to_meta, load_npz, read_table, save_csv
    from advfit.report.plots import save_figure
    from advfit.report.view_plots import plot_transfer_vs_whitebox
    from advfit.statistics.views import (summarise_whitebox, view_delta_tests, view_deltas,
                                         whitebox_cost)

    table = pd.concat([read_table(p) for p in snakemake.input.whitebox], ignore_index=True)
    table = table.sort_values(["dataset", "model", "regime", "split", "attack", "epoch"])
    accuracy = read_table(snakemake.input.accuracy)
    best = read_table(snakemake.input.best)
    deltas = view_deltas(accuracy, table, best)
    tests = view_delta_tests(deltas, snakemake.params.alternative)
    log.info("%d white-box rows, %d tests", len(table), len(tests))
    save_csv(snakemake.output.table, table)
    save_csv(snakemake.output.summary, summarise_whitebox(table, snakemake.params.confidence))
    save_csv(snakemake.output.tests, tests)
    save_figure(plot_transfer_vs_whitebox(accuracy, table, best, snakemake.params.confidence),
                snakemake.output.figure,
                snakemake.output.figure_svg)
    timed = []
    for table_path, arrays_path in zip(snakemake.input.whitebox, snakemake.input.arrays):
        seconds = array_to_meta(load_npz(arrays_path)["meta"]).get("seconds", {})
        rows = read_table(table_path)
        rows["seconds"] = [seconds.get(str(e), float("nan")) for e in rows["epoch"]]
        timed.append(rows)
    save_csv(snakemake.output.cost, whitebox_cost(pd.concat(timed), snakemake.params.anchor))
