"""longrl: train long-context reasoning LLMs with the QwenLong-L1 recipe on Kubeflow Pipelines."""

__version__ = "0.1.0"
