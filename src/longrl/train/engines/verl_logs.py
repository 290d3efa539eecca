"""What verl logs during a phase, turned into longrl's step outputs.

- Metrics: verl's ``file`` logger (``VERL_FILE_LOGGER_PATH``) writes ``{"step": N, "data": {...}}``
  per training step; each attempt of a step gets its own file (verl truncates the file it opens),
  kept next to the checkpoints (pushed and pulled back with them), and ``training_metrics`` merges
  them, later attempts winning for a step logged twice, into the lines of ``metrics.jsonl``. verl's ``mlflow`` logger sends the same metrics to the step's MLflow
  run itself (it attaches to ``MLFLOW_RUN_ID``).
- Validation: verl validates with its vLLM rollout on the last step and dumps each answer
  (``trainer.validation_data_dir``, ``{step}.jsonl``: ``input``, ``output``, ``gts``, ``score``,
  the reward's extra info). ``validation_from_dump`` scores those answers exactly as the trl
  engine scores its validation answers (``longrl.train.validation.score_completions``), matching
  each dump line to its validation row by the decoded prompt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longrl.tracking import METRICS_FILE, numeric_metrics


def attempt_log_path(metric_logs: Path) -> Path:
    """A new file for this attempt's verl metrics (named so that attempts sort in time order)."""
    metric_logs.mkdir(parents=True, exist_ok=True)
    return metric_logs / f"attempt-{time.time_ns():020d}.jsonl"


def training_metrics(metric_logs: Path) -> list[dict[str, Any]]:
    """Numeric metrics per step from every attempt's verl log, ``[{"step": N, ...}]`` by step."""
    by_step: dict[int, dict[str, float]] = {}
    for path in sorted(metric_logs.glob("attempt-*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            by_step[int(entry["step"])] = numeric_metrics(entry["data"])
    return [{"step": step, **by_step[step]} for step in sorted(by_step)]


def append_metrics(output_dir: Path, entries: Sequence[dict[str, Any]]) -> None:
    """Appends metric lines to the step's ``metrics.jsonl`` (MLflow already has them from verl)."""
    with (output_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")


def decoded_prompt(tokenizer: Any, prompt: str) -> str:
    """A prompt as verl's dumps show it: its token ids decoded without special tokens."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True)


def read_dump(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validation_from_dump(dump: Path, rows: Sequence[dict[str, Any]], tokenizer: Any) -> dict[str, float]:
    """longrl's validation metrics of the answers in one verl validation dump."""
    from longrl.train.validation import score_completions

    by_prompt = {decoded_prompt(tokenizer, row["prompt"]): row for row in rows}
    matched, completions = [], []
    for entry in read_dump(dump):
        row = by_prompt.get(entry["input"])
        if row is None:
            raise ValueError(
                f"{dump}: an answer to a prompt that is not in the validation rows "
                f"({entry['input'][:80]!r}...); was the dump written by another run?"
            )
        matched.append(row)
        completions.append(entry["output"])
    if not matched:
        raise ValueError(f"{dump} holds no answers")
    return score_completions(matched, completions, tokenizer)
