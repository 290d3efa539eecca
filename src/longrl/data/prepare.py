"""Data preparation: validated, de-duplicated records, measured in tokens, bucketed into curriculum phases.

Inputs are DocQA-RL-1.6K-style QA files (or SFT files, which add the reasoning response). The
output directory holds one parquet file per curriculum phase (``train-phase1.parquet``, ...), a
held-out ``validation.parquet`` drawn from all phases, ``rejected.jsonl`` with every row that
was not used and why, and ``stats.json``, written last: its presence means the step finished.
A phase left with fewer than ``min_phase_rows`` training rows (none, by default) stops the step
before anything is written: its training step would otherwise fail hours later.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, field_validator
from tqdm.auto import tqdm

from longrl import storage
from longrl.data.io import DataError, Row, RowError, read_rows
from longrl.data.prompts import chat_prompt
from longrl.data.schema import SFTRecord
from longrl.rewards.extraction import THINK_END
from longrl.storage import file_sha256

logger = logging.getLogger(__name__)

STATS_FILE = "stats.json"
REJECTED_FILE = "rejected.jsonl"
VALIDATION_FILE = "validation.parquet"
_MAX_ERRORS_SHOWN = 20


def phase_file(phase: int) -> str:
    return f"train-phase{phase}.parquet"


class PrepareConfig(BaseModel):
    """Turn QA (or SFT) files into per-phase training sets and a validation set."""

    inputs: list[str] = Field(min_length=1, description="Input files: JSONL or parquet, flat or verl layout")
    output_dir: str = Field(description="Directory to write the prepared datasets and stats.json into")
    tokenizer: str = Field(
        description="Tokenizer (path or name) of the model to train: lengths are in its tokens"
    )
    sft: bool = Field(False, description="Inputs are SFT records (with a reasoning 'response' to imitate)")
    phase_max_tokens: list[int] = Field(
        [20_000, 60_000],
        min_length=1,
        description="Upper bound of each curriculum phase's prompt length in tokens, ascending; "
        "phase k holds prompts longer than bound k-1 and at most bound k",
    )
    validation_fraction: float = Field(
        0.05, ge=0.0, le=0.5, description="Share of examples held out for validation"
    )
    on_bad_row: Literal["error", "skip"] = Field(
        "error", description="On an invalid row: stop with an error naming it, or skip it into rejected.jsonl"
    )
    min_phase_rows: int = Field(
        1,
        ge=1,
        description="Fewest training rows each phase must get, or nothing is written. An RL phase trains "
        "whole batches: for RL data, the RL step's train_batch_prompts",
    )
    seed: int = Field(0, description="Seed of the validation draw")
    batch_size: int = Field(64, ge=1, description="Prompts tokenised per batch")

    @field_validator("phase_max_tokens")
    @classmethod
    def _ascending(cls, bounds: list[int]) -> list[int]:
        if any(b <= 0 for b in bounds) or any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(f"must be positive and strictly ascending, got {bounds}")
        return bounds


def length_summary(lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {"count": 0}
    values = np.asarray(lengths)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": int(values.size),
        "min": int(values.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": int(values.max()),
        "mean": float(values.mean()),
    }


def assign_phase(tokens: int, bounds: Sequence[int]) -> int | None:
    """1-based phase whose band holds a prompt of this length, or None when it exceeds the last."""
    for phase, bound in enumerate(bounds, start=1):
        if tokens <= bound:
            return phase
    return None


def validation_ids(ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """A fixed share of ids, chosen by a seeded hash: the same ids whatever the input order."""
    if fraction <= 0 or len(ids) < 2:
        return set()
    count = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    return set(ranked[:count])


def measure_prompt_tokens(tokenizer: Any, prompts: Sequence[str], batch_size: int) -> list[int]:
    """Token counts of fully rendered prompts, tokenised in batches by the fast tokenizer."""
    counts: list[int] = []
    with tqdm(total=len(prompts), desc="tokenising prompts", unit="prompt", mininterval=2.0) as bar:
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False)["input_ids"]
            counts.extend(len(ids) for ids in encoded)
            bar.update(len(batch))
    return counts


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if not tokenizer.is_fast:
        logger.warning("tokenizer %s is not a fast tokenizer; measuring lengths will be slow", name)
    return tokenizer


def _read_inputs(config: PrepareConfig) -> tuple[list[Row], list[RowError], list[dict[str, Any]]]:
    rows: list[Row] = []
    errors: list[RowError] = []
    inputs = []
    for path in config.inputs:
        count = 0
        for item in read_rows(path, sft=config.sft):
            count += 1
            (errors if isinstance(item, RowError) else rows).append(item)
        inputs.append({"path": path, "sha256": file_sha256(path), "rows": count})
    if errors and config.on_bad_row == "error":
        shown = "\n".join(f"  {error}" for error in errors[:_MAX_ERRORS_SHOWN])
        more = (
            f"\n  ... and {len(errors) - _MAX_ERRORS_SHOWN} more" if len(errors) > _MAX_ERRORS_SHOWN else ""
        )
        raise DataError(
            f"{len(errors)} invalid row(s); nothing was written. Fix them, or pass --on-bad-row skip "
            f"to set them aside in {REJECTED_FILE}:\n{shown}{more}"
        )
    return rows, errors, inputs


def _deduplicate(rows: list[Row]) -> tuple[list[Row], list[dict[str, Any]], list[RowError]]:
    """Drops repeats of the same question on the same document; refuses one id used for two examples."""
    by_hash: dict[str, Row] = {}
    by_id: dict[str, Row] = {}
    unique: list[Row] = []
    duplicates: list[dict[str, Any]] = []
    id_clashes: list[RowError] = []
    for row in rows:
        key = row.record.content_hash
        if key in by_hash:
            first = by_hash[key]
            duplicates.append(
                {
                    "file": row.path,
                    "row": row.row,
                    "reason": "duplicate",
                    "id": row.record.id,
                    "duplicate_of": first.record.id,
                    "first_seen": first.where,
                }
            )
            continue
        if row.record.id in by_id:
            clash = RowError(
                row.path,
                row.row,
                "id",
                f"id '{row.record.id}' is already used by "
                f"{by_id[row.record.id].where} for a different example",
                row.record.model_dump(),
            )
            id_clashes.append(clash)
            continue
        by_hash[key] = row
        by_id[row.record.id] = row
        unique.append(row)
    return unique, duplicates, id_clashes


def _completion(record: SFTRecord) -> str:
    # The chat template's generation prompt already opened <think>; the completion continues it.
    response = record.response.lstrip()
    return response.removeprefix("<think>").lstrip("\n") if THINK_END in response else response


def _output_row(row: Row, prompt: str, tokens: int, phase: int) -> dict[str, Any]:
    record = row.record
    out = {
        "id": record.id,
        "data_source": record.data_source,
        "question": record.question,
        "answer": record.answer,
        "raw_answer": record.raw_answer,  # the published answer sentence, when `answer` was reduced from one
        "prompt": prompt,
        "prompt_tokens": tokens,
        "phase": phase,
    }
    if isinstance(record, SFTRecord):
        out["completion"] = _completion(record)
    return out


def _write_parquet(rows: list[dict[str, Any]], path: Path, sft: bool) -> dict[str, Any]:
    columns = ["id", "data_source", "question", "answer", "raw_answer", "prompt", "prompt_tokens", "phase"]
    if sft:
        columns.append("completion")
    schema = pa.schema(
        [(name, pa.int64() if name in ("prompt_tokens", "phase") else pa.string()) for name in columns]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)
    return {"rows": len(rows), "sha256": file_sha256(path)}


def _by_source(rows: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(collections.Counter(r["data_source"] for r in rows).items()))


def _fingerprint(config: PrepareConfig, input_hashes: list[str]) -> str:
    """Identifies a preparation: its settings and the exact bytes of its inputs."""
    payload = json.dumps({"config": config.model_dump(), "inputs": input_hashes}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _finished_run(config: PrepareConfig) -> dict[str, Any] | None:
    """The stats of an earlier run with the same config and input files, if its outputs are intact."""
    stats_path = Path(config.output_dir) / STATS_FILE
    if not stats_path.is_file():
        return None
    if not all(Path(p).is_file() for p in config.inputs):
        return None
    stats = json.loads(stats_path.read_text())
    if stats.get("fingerprint") != _fingerprint(config, [file_sha256(p) for p in config.inputs]):
        return None
    for name, meta in stats.get("outputs", {}).items():
        path = Path(config.output_dir) / name
        if not path.is_file() or file_sha256(path) != meta["sha256"]:
            return None
    return stats


def prepare(config: PrepareConfig, tokenizer: Any | None = None) -> dict[str, Any]:
    """Runs data preparation and returns its statistics (also written to stats.json)."""
    finished = _finished_run(config)
    if finished is not None:
        logger.info(
            "%s already holds this preparation (same config and inputs); nothing to do", config.output_dir
        )
        return finished
    rows, errors, inputs = _read_inputs(config)
    rows, duplicates, id_clashes = _deduplicate(rows)
    if id_clashes and config.on_bad_row == "error":
        raise DataError(
            "ids must be unique; nothing was written:\n" + "\n".join(f"  {c}" for c in id_clashes)
        )
    errors += id_clashes
    if not rows:
        raise DataError(f"no valid rows in {', '.join(config.inputs)}; nothing was written")

    tokenizer = tokenizer or load_tokenizer(config.tokenizer)
    prompts = [
        chat_prompt(tokenizer, row.record.context, row.record.question, row.record.prompt_answer_form)
        for row in rows
    ]
    lengths = measure_prompt_tokens(tokenizer, prompts, config.batch_size)

    bounds = config.phase_max_tokens
    in_band: list[tuple[Row, str, int, int]] = []
    too_long: list[dict[str, Any]] = []
    for row, prompt, tokens in zip(rows, prompts, lengths, strict=True):
        phase = assign_phase(tokens, bounds)
        if phase is None:
            too_long.append(
                {
                    "file": row.path,
                    "row": row.row,
                    "reason": "too_long",
                    "id": row.record.id,
                    "prompt_tokens": tokens,
                    "max_tokens": bounds[-1],
                    "record": row.record.model_dump(),
                }
            )
        else:
            in_band.append((row, prompt, tokens, phase))

    held_out = validation_ids([row.record.id for row, *_ in in_band], config.validation_fraction, config.seed)
    train: dict[int, list[dict[str, Any]]] = {phase: [] for phase in range(1, len(bounds) + 1)}
    validation: list[dict[str, Any]] = []
    for row, prompt, tokens, phase in in_band:
        (validation if row.record.id in held_out else train[phase]).append(
            _output_row(row, prompt, tokens, phase)
        )

    _require_full_phases(config, train, len(too_long))  # before anything is written
    rejected = [{**e.to_json(), "reason": f"invalid: {e.reason}"} for e in errors] + duplicates + too_long
    stats = _write_outputs(config, inputs, train, validation, rejected)
    stats.update(
        {
            "rows_read": sum(i["rows"] for i in inputs),
            "rows_used": sum(len(r) for r in train.values()) + len(validation),
            "rejected": {"invalid": len(errors), "duplicate": len(duplicates), "too_long": len(too_long)},
            "prompt_tokens": length_summary(lengths),
        }
    )
    _write_json(Path(config.output_dir) / STATS_FILE, stats)
    return stats


def _require_full_phases(
    config: PrepareConfig, train: dict[int, list[dict[str, Any]]], too_long: int
) -> None:
    """Refuses a phase with fewer than ``min_phase_rows`` training rows: its step would fail hours later."""
    bounds = config.phase_max_tokens
    short = []
    for phase, rows in train.items():
        if len(rows) < config.min_phase_rows:
            lower = bounds[phase - 2] if phase > 1 else 0
            short.append(
                f"  phase {phase} ({lower} < prompt tokens <= {bounds[phase - 1]}): "
                f"{len(rows)} training row(s), fewer than min_phase_rows={config.min_phase_rows}"
            )
    if not short:
        return
    counts = ", ".join(f"phase {phase}: {len(rows)}" for phase, rows in train.items())
    raise DataError(
        f"curriculum phase(s) too small in {', '.join(config.inputs)}; nothing was written:\n"
        + "\n".join(short)
        + f"\n  (training rows per phase: {counts}; {too_long} prompt(s) longer than {bounds[-1]} tokens)\n"
        "Widen the band (phase_max_tokens, --phase-max-tokens), add examples of that length, or drop "
        "the phase: give one bound fewer in phase_max_tokens (a pipeline also needs LONGRL_RL_PHASES "
        "set to the new number of phases when it is compiled). min_phase_rows (--min-phase-rows) is "
        "the fewest rows a phase may train on."
    )


def _write_outputs(
    config: PrepareConfig,
    inputs: list[dict[str, Any]],
    train: dict[int, list[dict[str, Any]]],
    validation: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
) -> dict[str, Any]:
    """Writes datasets next to the output directory, then moves them in; stats.json comes last."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATS_FILE).unlink(missing_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    outputs: dict[str, Any] = {}
    phases = []
    lower = 0
    for phase, rows in train.items():
        name = phase_file(phase)
        outputs[name] = _write_parquet(rows, staging / name, config.sft)
        held = [r for r in validation if r["phase"] == phase]
        phases.append(
            {
                "phase": phase,
                "min_tokens_exclusive": lower,
                "max_tokens": config.phase_max_tokens[phase - 1],
                "train_rows": len(rows),
                "validation_rows": len(held),
                "train_by_data_source": _by_source(rows),
                "prompt_tokens": length_summary([r["prompt_tokens"] for r in rows + held]),
            }
        )
        lower = config.phase_max_tokens[phase - 1]
    outputs[VALIDATION_FILE] = _write_parquet(validation, staging / VALIDATION_FILE, config.sft)
    with (staging / REJECTED_FILE).open("w", encoding="utf-8") as handle:
        for item in rejected:
            handle.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
    for name in [*outputs, REJECTED_FILE]:
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)
    return {
        "kind": "sft" if config.sft else "rl",
        "config": config.model_dump(),
        "fingerprint": _fingerprint(config, [i["sha256"] for i in inputs]),
        "inputs": inputs,
        "phases": phases,
        "validation": {"rows": len(validation), "by_data_source": _by_source(validation)},
        "outputs": outputs,
        "dataset_hash": hashlib.sha256(
            json.dumps({k: v["sha256"] for k, v in sorted(outputs.items())}).encode()
        ).hexdigest(),
    }


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    storage.write_text(str(path), json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
