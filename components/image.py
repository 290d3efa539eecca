"""The image components run in on a cluster (kfp, mlflow, longrl); set at compile time."""

import os

PIPELINE_IMAGE = os.environ.get("LONGRL_PIPELINE_IMAGE", "ghcr.io/longrl/pipeline:0.1.0")
