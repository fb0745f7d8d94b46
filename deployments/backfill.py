"""The backfill deployment: no schedule; an operator runs it from the UI with a date range.

python -m deployments.backfill [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

from deployments import FlowDeployment
from flows.backfill import backfill

BACKFILL = FlowDeployment(
    backfill,
    "backfill",
    "Publish the lists of every as-of date of a range, oldest first; days already published "
    "are skipped unless forced; the first failed day stops it.",
)

if __name__ == "__main__":
    BACKFILL.serve(__doc__)
