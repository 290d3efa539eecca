"""The placement planner: will a step fit its GPUs, and with which engine and layout?"""

from longrl.plan.placement import ENGINE_SHARDING, ENGINES, Engine, EngineChoice, Parallelism, Sharding
from longrl.plan.workload import Hardware, Workload

__all__ = [
    "ENGINES",
    "ENGINE_SHARDING",
    "Engine",
    "EngineChoice",
    "Hardware",
    "Parallelism",
    "Sharding",
    "Workload",
]
