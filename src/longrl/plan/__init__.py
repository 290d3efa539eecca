"""The placement planner: will a step fit its GPUs, and with which engine and layout?

``read_model_shape`` reads a model's config.json, ``estimate`` gives the per-GPU memory of one placement,
``auto`` searches the placements longrl's engines can run for the cheapest that fits. ``python -m
longrl.plan`` is the command line (``estimate``, ``auto``, ``table``).
"""

from longrl.plan.memory import Estimate, estimate
from longrl.plan.placement import (
    ENGINE_SHARDING,
    ENGINES,
    Engine,
    EngineChoice,
    Parallelism,
    Sharding,
    engine_problems,
)
from longrl.plan.search import Plan, auto
from longrl.plan.shape import BUILTIN_SHAPES, ModelShape, ModelShapeError, read_model_shape
from longrl.plan.workload import Hardware, Workload

__all__ = [
    "BUILTIN_SHAPES",
    "ENGINES",
    "ENGINE_SHARDING",
    "Engine",
    "EngineChoice",
    "Estimate",
    "Hardware",
    "ModelShape",
    "ModelShapeError",
    "Parallelism",
    "Plan",
    "Sharding",
    "Workload",
    "auto",
    "engine_problems",
    "estimate",
    "read_model_shape",
]
