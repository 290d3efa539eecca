"""Launchers: how a training step's entrypoint gets run, locally (local Ray) or on KubeRay."""

from longrl.launchers.kuberay import KubeRayConfig, KubeRayLauncher, LaunchFailed, build_rayjob, rayjob_name
from longrl.launchers.local import LocalLauncher

__all__ = ["KubeRayConfig", "KubeRayLauncher", "LaunchFailed", "LocalLauncher", "build_rayjob", "rayjob_name"]
