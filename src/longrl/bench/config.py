"""``BenchConfig``: which benchmarks, how big, how often, where the report goes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from longrl.rewards.judge import JudgeConfig

Size = Literal["small", "full"]
# Every benchmark, in the order they run; the default set leaves out the pipeline (many minutes).
ALL_BENCHMARKS = ("rewards", "data_prep", "rollout", "overhead", "pipeline", "gpu_memory")
DEFAULT_BENCHMARKS = {
    "small": ("rewards", "data_prep", "rollout", "overhead", "gpu_memory"),
    "full": ALL_BENCHMARKS,
}


class BenchConfig(BaseModel):
    """Run longrl's micro and macro benchmarks; write bench.json and bench.md."""

    output_dir: str = Field("build/bench", description="Where bench.json, bench.md and the work files go")
    only: list[str] = Field(
        default_factory=list,
        description=f"Benchmarks to run, comma-separated (default: all but 'pipeline' for --size small); "
        f"known: {', '.join(ALL_BENCHMARKS)}",
    )
    repeats: int = Field(3, ge=1, description="Measurements per figure (the report gives median, min, max)")
    size: Size = Field("small", description="small: seconds per benchmark (CI); full: the issue's sizes")
    seed: int = Field(0, description="Seed of generated data and sampling")
    judge_latency_ms: float = Field(
        50.0, ge=0, description="Latency the benchmark's judge server adds to every request"
    )
    judge_concurrency: int = Field(
        JudgeConfig.model_fields["max_concurrency"].default,
        ge=1,
        description="Judge requests in flight (the configured concurrency; JudgeConfig's default)",
    )
    launcher: bool = Field(
        False,
        description="Overhead benchmark: also time the local launcher (fresh process + local Ray); "
        "always on with --size full",
    )

    @field_validator("only", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [name.strip() for item in value for name in str(item).split(",") if name.strip()]
        return value

    @field_validator("only")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in ALL_BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(ALL_BENCHMARKS)}")
        return names

    def selected(self) -> list[str]:
        """The benchmarks to run, in their canonical order."""
        wanted = set(self.only) if self.only else set(DEFAULT_BENCHMARKS[self.size])
        return [name for name in ALL_BENCHMARKS if name in wanted]

    def time_launcher(self) -> bool:
        return self.launcher or self.size == "full"
