"""Evaluation on the paper's long-document QA benchmarks: loading, vLLM generation, scoring, reports."""

from longrl.evaluation.benchmarks import (
    BENCHMARKS,
    EvalRecord,
    load_benchmark,
    to_layout,
    write_benchmark_file,
)
from longrl.evaluation.generation import GenerationConfig, build_prompt, rope_scaling, truncate_middle
from longrl.evaluation.run import EvalConfig, evaluate, read_summary
from longrl.evaluation.scoring import score_all, summarize

__all__ = [
    "BENCHMARKS",
    "EvalConfig",
    "EvalRecord",
    "GenerationConfig",
    "build_prompt",
    "evaluate",
    "load_benchmark",
    "read_summary",
    "rope_scaling",
    "score_all",
    "summarize",
    "to_layout",
    "truncate_middle",
    "write_benchmark_file",
]
