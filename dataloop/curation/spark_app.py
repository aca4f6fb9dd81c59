"""Scenario mining of one arrival day as a Spark application.

With ``DATALOOP_TABLE_ENGINE=spark`` the ``scenario_index`` asset runs this file with
spark-submit through Dagster Pipes: this process is the Spark driver; it mines the day into
the lake as ``mine_day`` does on DuckDB, and reports the application back to the run.
"""

from __future__ import annotations


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    from dataloop.curation.scenarios import load_scenarios, mine_day
    from dataloop.lake.layout import key_digest
    from dataloop.lake.spark import session
    from dataloop.lake.store import open_store

    with open_dagster_pipes() as pipes:
        day = pipes.extras["day"]
        context = session().sparkContext
        pipes.log.info(f"mining {day} on {context.master} as {context.applicationId}")
        record = mine_day(open_store(pipes.extras["lake"]), day, load_scenarios(), "spark")
        pipes.report_asset_materialization(
            data_version=key_digest(record["clips_key"]),
            metadata={
                "spark_master": context.master,
                "spark_application": context.applicationId,
            },
        )


if __name__ == "__main__":
    main()
