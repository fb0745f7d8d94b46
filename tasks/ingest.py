from prefect import task

from decayrec.config import DecayrecConfig
from decayrec.lake.ingest import stage_sources
from decayrec.lake.staging import StagedBatch
from tasks import TIMEOUTS, retry_transient


@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    timeout_seconds=TIMEOUTS["io"],
)
def ingest(config: DecayrecConfig, run_id: str) -> list[StagedBatch]:
    """Stage every new source file in the lake (nothing reaches `events` yet)."""
    return stage_sources(config, run_id)
