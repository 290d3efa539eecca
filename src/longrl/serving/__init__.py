"""Serving the verifier (the LLM judge) with vLLM: a local process, or a Deployment on the cluster."""

from longrl.serving.config import VerifierConfig
from longrl.serving.kubernetes import ClusterVerifier, ClusterVerifierConfig, build_verifier_objects
from longrl.serving.local import LocalVerifier, ServingError

__all__ = [
    "ClusterVerifier",
    "ClusterVerifierConfig",
    "LocalVerifier",
    "ServingError",
    "VerifierConfig",
    "build_verifier_objects",
]
