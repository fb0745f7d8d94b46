from datetime import datetime

from prefect import task

from decayrec.config import DecayrecConfig
from decayrec.features import Snapshot, build_snapshot


@task(name="features")
def features(config: DecayrecConfig, as_of_time: datetime) -> Snapshot:
    """Build the decay-weighted matrix as of T and write its Parquet snapshot."""
    return build_snapshot(config, as_of_time)
