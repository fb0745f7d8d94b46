"""The weekly tune deployment: Sundays 03:00 in the configured timezone; the nightly
flow picks up its winner on the next run.

    python -m deployments.tune [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

from deployments import FlowDeployment
from flows.tune import tune_flow

TUNE = FlowDeployment(
    tune_flow, "tune-weekly", "Tune decay and model parameters on a validation split.", "0 3 * * 0"
)

if __name__ == "__main__":
    TUNE.serve(__doc__)
