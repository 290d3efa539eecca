"""KFP components: thin typed wrappers over ``longrl.steps`` (all logic lives in the library)."""

from components.data import prepare_data
from components.evaluation import evaluate_model
from components.judge import build_judge
from components.planning import plan_training
from components.registry import register_model
from components.tracking import finish_pipeline, open_tracking
from components.training import train_rl_phase, train_sft
from components.verifier import start_verifier

__all__ = [
    "build_judge",
    "evaluate_model",
    "finish_pipeline",
    "open_tracking",
    "plan_training",
    "prepare_data",
    "register_model",
    "start_verifier",
    "train_rl_phase",
    "train_sft",
]
