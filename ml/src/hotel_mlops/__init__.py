"""Training and MLflow logging jobs for the hotel-booking cancellation model.

The TypeScript activities run these jobs as child processes: ``python -m hotel_mlops.jobs``.
"""

import os

# MLflow 3 sends usage telemetry to an external host unless MLFLOW_DISABLE_TELEMETRY is set. The jobs
# run inside a private control plane, so switch it off before any submodule imports mlflow.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# The jobs log JSON lines only (hotel_mlops.joblog), so MLflow must not install its plain-text handler
# when it is imported. Set MLFLOW_CONFIGURE_LOGGING=true to keep MLflow's own log format.
os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")

__version__ = "0.1.0"
