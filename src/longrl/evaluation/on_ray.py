"""Evaluation as a GPU RayJob: ``python -m longrl.evaluation.on_ray --config env:LONGRL_STEP_CONFIG``.

With ``launcher=kuberay`` the evaluation step runs this entrypoint in a RayJob, as training runs
``python -m longrl.train``. KubeRay runs the entrypoint on the head pod, which has no GPU: the
evaluation itself (vLLM generation, scoring, the report, its MLflow run) runs as one Ray task that
holds ``tensor_parallel_size`` GPUs of a worker pod, where vLLM shards the model over them. That
size is cut to the most of the node's GPUs that vLLM can shard the model's heads over (a model
with 28 attention and 4 key/value heads on an 8-GPU node runs on 4). Past the model's native context YaRN is switched on
(``generation.rope_overrides``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from longrl import storage
from longrl.cli import read_config_file
from longrl.evaluation.generation import tensor_parallel_for
from longrl.evaluation.run import EvalConfig, evaluate
from longrl.launchers.kuberay import CONFIG_ENV

logger = logging.getLogger(__name__)

ENTRYPOINT = f"python -m longrl.evaluation.on_ray --config env:{CONFIG_ENV}"


def attention_heads(model: str) -> tuple[int, int]:
    """The model's (attention heads, key/value heads), from its config.json alone (no weights fetched)."""
    config = json.loads(storage.read_text(storage.join(model, "config.json")))
    text = config.get("text_config") or config
    heads = int(text["num_attention_heads"])
    return heads, int(text.get("num_key_value_heads") or heads)


def sized_for_model(config: EvalConfig) -> EvalConfig:
    """The config with a tensor-parallel size vLLM accepts for this model."""
    wanted = config.generation.tensor_parallel_size
    usable = tensor_parallel_for(*attention_heads(config.model), wanted)
    if usable != wanted:
        logger.info(
            "tensor parallel %d -> %d: the model's attention heads divide by %d", wanted, usable, usable
        )
        generation = config.generation.model_copy(update={"tensor_parallel_size": usable})
        return config.model_copy(update={"generation": generation})
    return config


def _evaluate_json(config_json: str) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return evaluate(EvalConfig.model_validate_json(config_json))


def evaluate_on_ray(config: EvalConfig) -> dict[str, Any]:
    """Runs ``evaluate`` as a Ray task on ``tensor_parallel_size`` GPUs of the Ray cluster this joins."""
    import ray

    from longrl.train.runner import ensure_ray

    config = sized_for_model(config)
    ensure_ray()
    gpus = config.generation.tensor_parallel_size
    task = ray.remote(num_gpus=gpus, max_retries=0)(_evaluate_json)
    logger.info("evaluating %s on %d GPU(s) of the Ray cluster", config.model, gpus)
    return ray.get(task.remote(config.model_dump_json()))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m longrl.evaluation.on_ray", description=__doc__)
    parser.add_argument("--config", required=True, help="the EvalConfig: a YAML/JSON file or env:NAME")
    args = parser.parse_args(argv)
    summary = evaluate_on_ray(EvalConfig.model_validate(read_config_file(args.config)))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
