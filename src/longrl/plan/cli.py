"""``python -m longrl.plan estimate|auto|table``: the placement planner on the command line.

``estimate`` gives the memory of one placement, ``auto`` the cheapest placement that fits (the placement
flags given are kept fixed), ``table`` the planner's verdicts for Qwen2.5 1.5B-32B at 20K and 60K prompts
on 8, 16 and 32 GPUs (the README's "Scaling" table). Exit status: 0 with a verdict (fitting or not; read
``fits``), 2 for bad input, with a one-line message naming the option or file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, get_args

from pydantic import ValidationError

from longrl.plan.memory import Estimate, estimate
from longrl.plan.placement import ENGINES, Parallelism
from longrl.plan.search import Plan, auto
from longrl.plan.shape import BUILTIN_SHAPES, ModelShape, ModelShapeError, read_model_shape
from longrl.plan.workload import Hardware, Workload

PLACEMENT_FIELDS = tuple(Parallelism.model_fields)
TABLE_MODELS = ("Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-14B", "Qwen/Qwen2.5-32B")
TABLE_PROMPTS = (20_000, 60_000)
TABLE_GPUS = (8, 16, 32)


class UsageError(Exception):
    """Bad input; the message names the option or file."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _add_workload_and_hardware(parser: argparse.ArgumentParser, model_required: bool = True) -> None:
    if model_required:
        parser.add_argument(
            "--model-config",
            required=True,
            metavar="PATH",
            help="The model's config.json, a model directory, an s3:// URI of either, or a known hub name "
            f"({', '.join(sorted(BUILTIN_SHAPES))})",
        )
    parser.add_argument(
        "--kind", required=model_required, choices=("sft", "rl"), default="rl", help="SFT or RL step"
    )
    if model_required:
        parser.add_argument(
            "--prompt-tokens",
            type=int,
            required=True,
            metavar="N",
            help="Longest prompt in tokens (SFT: longest prompt + response)",
        )
    parser.add_argument(
        "--response-tokens",
        type=int,
        default=0 if model_required else 10_000,
        metavar="N",
        help="Longest response (RL)",
    )
    hardware = Hardware.model_fields
    parser.add_argument(
        "--nodes",
        type=int,
        default=hardware["nodes"].default,
        metavar="N",
        help="Nodes of the step (default %(default)s)",
    )
    parser.add_argument(
        "--gpus-per-node",
        type=int,
        default=hardware["gpus_per_node"].default,
        metavar="N",
        help="GPUs per node (default %(default)s)",
    )
    parser.add_argument(
        "--gpu-memory-gib",
        type=float,
        default=hardware["gpu_memory_gib"].default,
        metavar="G",
        help="Memory one GPU offers in GiB (80: H100 80GB)",
    )
    parser.add_argument(
        "--cpu-memory-gib-per-node",
        type=float,
        default=None,
        metavar="G",
        help="CPU memory one node (pod) offers in GiB; placements needing more for offload/loading do not fit "
        "(default: not checked)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=Workload.model_fields["temperature"].default,
        help="Rollout temperature (verl keeps scaled logits unless 1)",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table")


def _add_placement(parser: argparse.ArgumentParser, fixed_only: bool) -> None:
    """One flag per ``Parallelism`` field, named, typed and described by it; with ``fixed_only`` (auto)
    every default is None: a flag given is a fixed field. ``estimate`` needs ``--sharding``."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="Engine (estimate: default verl for fsdp, trl otherwise; auto: restrict the search to it)",
    )
    for name, field in Parallelism.model_fields.items():
        option = {"help": field.description, "default": None if fixed_only else field.default}
        annotation = field.annotation
        if annotation is bool:
            option["action"] = argparse.BooleanOptionalAction
        elif get_args(annotation) and all(isinstance(choice, str) for choice in get_args(annotation)):
            option.update(choices=get_args(annotation), required=not fixed_only, default=None)
        else:  # int, float, int | None
            number = next(t for t in (int, float) if t is annotation or t in get_args(annotation))
            option.update(type=number, metavar="F" if number is float else "N")
        parser.add_argument(f"--{name.replace('_', '-')}", **option)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m longrl.plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    one = commands.add_parser("estimate", help="Memory per GPU of one placement")
    _add_workload_and_hardware(one)
    _add_placement(one, fixed_only=False)
    search = commands.add_parser(
        "auto", help="The cheapest placement that fits (placement flags given stay fixed)"
    )
    _add_workload_and_hardware(search)
    _add_placement(search, fixed_only=True)
    table = commands.add_parser(
        "table", help="The planner's table for Qwen2.5 1.5B-32B at 20K/60K on 8/16/32 GPUs"
    )
    _add_workload_and_hardware(table, model_required=False)
    return parser


def _inputs(args: argparse.Namespace) -> tuple[ModelShape, Workload, Hardware]:
    try:
        shape = read_model_shape(args.model_config)
    except ModelShapeError as exc:
        raise UsageError(f"--model-config {exc}") from exc
    workload = _validated(
        Workload,
        kind=args.kind,
        prompt_tokens=args.prompt_tokens,
        response_tokens=args.response_tokens,
        temperature=args.temperature,
    )
    hardware = _validated(
        Hardware,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        gpu_memory_gib=args.gpu_memory_gib,
        cpu_memory_gib_per_node=args.cpu_memory_gib_per_node,
    )
    return shape, workload, hardware


def _validated(model: type[Any], **values: Any) -> Any:
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = "--" + "-".join(str(part) for part in error["loc"]).replace("_", "-")
        raise UsageError(f"{option}: {error['msg'].removeprefix('Value error, ')}") from exc


def _placement_values(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in PLACEMENT_FIELDS if getattr(args, name) is not None}


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def describe_placement(engine: str, parallelism: Parallelism, kind: str) -> str:
    """One line: sharding, offload, sequence parallel, micro-batch, checkpointing, loss, rollout layout."""
    p = parallelism
    offload = "+".join(
        k for k, on in (("params", p.offload_params), ("optimizer", p.offload_optimizer)) if on
    )
    parts = [
        f"{engine} {p.sharding}",
        f"offload {offload or 'none'}",
        f"SP {p.sequence_parallel}",
        f"micro-batch {f'{p.micro_batch_tokens} tokens' if p.micro_batch_tokens else '1 sequence'}",
        "checkpointing" if p.gradient_checkpointing else "no checkpointing",
    ]
    if p.fused_loss:
        parts.append("fused loss")
    if kind == "rl":
        parts.append(f"rollout TP {p.rollout_tensor_parallel} at {p.rollout_memory_fraction:g}")
    return ", ".join(parts)


def _estimate_text(result: Estimate, kind: str) -> str:
    lines = [
        f"fits: {str(result.fits).lower()}",
        f"placement: {describe_placement(result.engine, result.parallelism, kind)}",
        f"peak: {result.peak_gib_per_gpu:.1f} GiB per GPU of {result.gpu_memory_gib:g} ({result.peak_phase} phase)",
        f"training phase: {result.training_gib:.1f} GiB   rollout phase: {_gib(result.rollout_gib)} GiB",
        f"tokens per GPU: {result.tokens_per_gpu}   parameters: {result.parameters / 1e9:.2f}B",
    ]
    if result.kv_cache_sequences is not None:
        lines.append(f"KV cache: {result.kv_cache_sequences} whole sequences per vLLM engine")
    lines.append(f"CPU per node: {result.cpu_gib_per_node:.1f} GiB ({_pairs(result.cpu_breakdown)})")
    lines.append(f"nominal step time: {result.step_time_s:.0f} s")
    lines.append("")
    lines.append(f"{'component':<32}{'GiB/GPU':>10}")
    lines.extend(f"{name:<32}{value:>10.2f}" for name, value in result.breakdown.items())
    lines.extend(f"problem: {problem}" for problem in result.problems)
    lines.extend(f"note: {note}" for note in result.notes)
    return "\n".join(lines)


def _pairs(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f}" for name, value in values.items())


def plan_json(plan: Plan) -> dict[str, Any]:
    result = plan.estimate
    return {
        "fits": plan.fits,
        "engine": plan.engine,
        "placement": plan.parallelism.model_dump(mode="json") if plan.parallelism else None,
        "peak_gib_per_gpu": result.peak_gib_per_gpu if result else None,
        "breakdown": result.breakdown if result else None,
        "reason": plan.reason,
        "min_gpus": plan.min_gpus,
        "placements_considered": plan.placements_considered,
        "estimate": result.model_dump(mode="json") if result else None,
    }


def _plan_text(plan: Plan, kind: str) -> str:
    if plan.fits:
        assert plan.estimate is not None
        return _estimate_text(plan.estimate, kind)
    lines = ["fits: false", f"reason: {plan.reason}"]
    if plan.estimate is not None:
        lines += ["", "closest placement:", _estimate_text(plan.estimate, kind)]
    return "\n".join(lines)


def scaling_table(
    kind: str, response_tokens: int, gpus_per_node: int, gpu_memory_gib: float, temperature: float
) -> list[dict[str, Any]]:
    rows = []
    for name in TABLE_MODELS:
        shape = BUILTIN_SHAPES[name]
        for prompt in TABLE_PROMPTS:
            workload = Workload(
                kind=kind,
                prompt_tokens=prompt,
                response_tokens=response_tokens if kind == "rl" else 0,
                temperature=temperature,
            )
            for gpus in TABLE_GPUS:
                per_node = min(gpus_per_node, gpus)
                hardware = Hardware(
                    nodes=gpus // per_node, gpus_per_node=per_node, gpu_memory_gib=gpu_memory_gib
                )
                plan = auto(shape, workload, hardware)
                rows.append({"model": name, "prompt_tokens": prompt, "gpus": gpus, **plan_json(plan)})
    return rows


def _table_markdown(rows: list[dict[str, Any]], kind: str) -> str:
    lines = [
        "| model | prompt | GPUs | engine | placement | peak GiB/GPU |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["fits"]:
            placement = describe_placement(row["engine"], Parallelism(**row["placement"]), kind)
            cells = [row["engine"], placement, f"{row['peak_gib_per_gpu']:.1f}"]
        else:
            needs = f"needs {row['min_gpus']} GPUs" if row["min_gpus"] else "does not fit"
            cells = ["-", f"does not fit ({needs})", "-"]
        model = row["model"].removeprefix("Qwen/")
        lines.append(
            f"| {model} | {row['prompt_tokens'] // 1000}K | {row['gpus']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "table":
        rows = scaling_table(
            args.kind, args.response_tokens, args.gpus_per_node, args.gpu_memory_gib, args.temperature
        )
        print(json.dumps(rows, indent=2) if args.json else _table_markdown(rows, args.kind))
        return 0
    shape, workload, hardware = _inputs(args)
    values = _placement_values(args)
    if args.command == "estimate":
        engine = args.engine or ("verl" if args.sharding == "fsdp" else "trl")
        parallelism = _validated(Parallelism, **values)
        result = estimate(shape, workload, hardware, engine, parallelism)
        print(
            json.dumps(result.model_dump(mode="json"), indent=2)
            if args.json
            else _estimate_text(result, workload.kind)
        )
        return 0
    plan = auto(shape, workload, hardware, engine=args.engine, fixed=values)
    print(json.dumps(plan_json(plan), indent=2) if args.json else _plan_text(plan, workload.kind))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader (head, grep -q) stopped reading: not an error of ours
        sys.stdout = None
        return 0
