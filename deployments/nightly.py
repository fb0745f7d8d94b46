"""The nightly deployment: the nightly flow on a cron at 02:00 in the configured timezone.

    python -m deployments.nightly [--config decayrec.yaml]   # serve it against PREFECT_API_URL

Only a non-default config is stored with the deployment; every default stays in
DecayrecConfig, so the UI form shows the model's own defaults and descriptions.
"""

from deployments import FlowDeployment
from flows.nightly import nightly

NIGHTLY = FlowDeployment(
    nightly, "nightly", "Publish every user's top-K list for today's as-of date.", "0 2 * * *"
)

if __name__ == "__main__":
    NIGHTLY.serve(__doc__)
