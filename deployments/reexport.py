"""The reexport deployment: no schedule; republish a date's lists from its stored model.

python -m deployments.reexport [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

from deployments import FlowDeployment
from flows.reexport import reexport

REEXPORT = FlowDeployment(
    reexport,
    "reexport",
    "Republish an as-of date's lists from a stored model and snapshot, without retraining.",
)

if __name__ == "__main__":
    REEXPORT.serve(__doc__)
