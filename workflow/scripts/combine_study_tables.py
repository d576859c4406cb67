from advfit.jobs import job_log

with job_log(snakemake.log[0]) as log:
    from advfit.runtime.io import read_table, save_csv
    from advfit.studies import combine_tables

    tables = {study: read_table(path)
              for study, path in zip(snakemake.params.studies, snakemake.input)}
    combined = combine_tables(tables)
    log.info("%d rows from %d studies", len(combined), len(tables))
    save_csv(snakemake.output[0], combined)
