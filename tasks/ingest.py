from decayrec.config import DecayrecConfig
from decayrec.lake.ingest import stage_sources
from decayrec.lake.staging import StagedBatch
from tasks import io_task


@io_task("ingest")
def ingest(config: DecayrecConfig, run_id: str) -> list[StagedBatch]:
    """Stage every new source file in the lake (nothing reaches `events` yet)."""
    return stage_sources(config, run_id)
