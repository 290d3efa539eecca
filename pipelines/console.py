"""The quiet console of ``make run``: one line per step with its key figures, each step's log in a file.

kfp.local prints every task's executor input, outputs and streamed logs (trainer progress, vLLM's
start-up) to the console. Here each task's output goes to ``<log dir>/<NN>-<task>.log`` instead:
file descriptors 1 and 2 and ``sys.stdout``/``sys.stderr`` are pointed at the file while the task
runs, which catches kfp.local's own lines, the lines it relays from the step's process, and anything
a library writes straight to the descriptors. What stays on the console is one line per task:

    [5/11] warm-up SFT ... done in 84 s  val_accuracy 0.41 val_answered 0.92

The hook is kfp.local's ``task_executor.execute_single_task`` (kfp 2.17), which both of its DAG
orchestrators call once per task, one task at a time (only ``dsl.ParallelFor``, unused here, runs
tasks in threads).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

MAX_FIGURES = 5
FAILED_LOG_LINES = 25


@contextmanager
def redirected(log_file: Path) -> Iterator[None]:
    """Everything this process and its children write to stdout and stderr goes to ``log_file`` (appended)."""
    sys.stdout.flush()
    sys.stderr.flush()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", buffering=1, encoding="utf-8", errors="replace") as log:
        saved_fds = (os.dup(1), os.dup(2))
        saved_streams = (sys.stdout, sys.stderr)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield
        finally:
            log.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _scalars(values: dict[str, Any]) -> dict[str, str]:
    shown = {}
    for key, value in values.items():
        if isinstance(value, int | float):
            shown[key] = _number(value)
        elif isinstance(value, str) and value and len(value) <= 40 and "\n" not in value:
            shown[key] = value
    return shown


def key_figures(outputs: dict[str, Any]) -> dict[str, str]:
    """What a task's outputs say in brief: its Metrics artifacts' values, then the scalar fields of a
    returned JSON object (registration's version and aliases) or a short returned string (an URL);
    at most ``MAX_FIGURES``, zeros last."""
    figures: dict[str, str] = {}
    for value in outputs.values():
        if getattr(value, "schema_title", "") == "system.Metrics":
            figures.update(_scalars(dict(value.metadata)))
    for name, value in outputs.items():
        if not isinstance(value, str) or not value:
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if isinstance(parsed, dict):
            figures.update(_scalars(parsed))
        elif isinstance(parsed, str) and len(parsed) <= 80:
            figures[name] = parsed
    nonzero_first = sorted(figures.items(), key=lambda item: item[1] == "0")  # stable: else as logged
    return dict(nonzero_first[:MAX_FIGURES])


def step_line(outcome: str, seconds: float, figures: dict[str, str]) -> str:
    """The end of a step's console line: ``done in 84 s  loss 1.23 val_accuracy 0.41``."""
    text = {"done": f"done in {seconds:.0f} s", "reused": "reused (unchanged since an earlier run)"}.get(
        outcome, f"FAILED after {seconds:.0f} s"
    )
    return "  ".join([text, " ".join(f"{key} {value}" for key, value in figures.items())]).rstrip()


def count_steps(pipeline_spec: Any) -> int:
    """Tasks that run an executor in a compiled pipeline (those of nested DAGs, such as the exit
    handler's body, included)."""

    def count(dag: Any) -> int:
        total = 0
        for task in dag.tasks.values():
            component = pipeline_spec.components[task.component_ref.name]
            total += count(component.dag) if component.WhichOneof("implementation") == "dag" else 1
        return total

    return count(pipeline_spec.root.dag)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in text[-lines:])


class StepConsole:
    """Prints one line per kfp.local task and sends the task's output to its own file in ``log_dir``."""

    def __init__(
        self,
        log_dir: Path,
        total: int,
        console: TextIO,
        reused: Callable[[], list[str]] = list,
    ) -> None:
        self.log_dir = log_dir
        self.total = total
        self.console = console
        self.reused = reused
        self.started = 0
        self.logs: list[Path] = []
        self.failed: list[Path] = []

    def say(self, text: str, end: str = "\n") -> None:
        self.console.write(text + end)
        self.console.flush()

    @contextmanager
    def phase(self, label: str, log_name: str) -> Iterator[None]:
        """Work of the run itself (preparing inputs, starting a server): one line, its output in a file."""
        log = self.log_dir / f"{log_name}.log"
        self.say(f"{label} ... ", end="")
        started = time.monotonic()
        try:
            with redirected(log):
                yield
        except BaseException:
            self.say(
                f"FAILED after {time.monotonic() - started:.0f} s; its log: {log}\n{_tail(log, FAILED_LOG_LINES)}"
            )
            raise
        self.say(f"done in {time.monotonic() - started:.0f} s")

    def run_task(
        self, run: Callable[..., tuple[dict[str, Any], Any]], **kwargs: Any
    ) -> tuple[dict[str, Any], Any]:
        """kfp.local's ``execute_single_task``, with its output in the task's log and a line on the console."""
        from kfp.local import status

        self.started += 1
        name = kwargs["task_name"]
        spec = kwargs.get("task_spec")
        label = spec.task_info.name if spec is not None and spec.task_info.name else name
        log = self.log_dir / f"{self.started:02d}-{name}.log"
        self.logs.append(log)
        self.say(f"[{self.started}/{self.total}] {label} ... ", end="")
        reused_before = len(self.reused())
        started = time.monotonic()
        outcome = "failed"
        outputs: dict[str, Any] = {}
        try:
            with redirected(log):
                outputs, task_status = run(**kwargs)
            if task_status == status.Status.SUCCESS:
                outcome = "reused" if len(self.reused()) > reused_before else "done"
            return outputs, task_status
        finally:
            self.say(step_line(outcome, time.monotonic() - started, key_figures(outputs)))
            if outcome == "failed":
                self.failed.append(log)
                self.say(f"    its log: {log}\n{_tail(log, FAILED_LOG_LINES)}")

    @contextmanager
    def attached(self) -> Iterator[StepConsole]:
        """While inside: kfp.local's tasks run through ``run_task``; what else the pipeline prints goes
        to ``kfp.log``."""
        from kfp.local.orchestrator import task_executor

        original = task_executor.execute_single_task

        def execute_single_task(**kwargs: Any) -> tuple[dict[str, Any], Any]:
            return self.run_task(original, **kwargs)

        task_executor.execute_single_task = execute_single_task
        try:
            with redirected(self.log_dir / "kfp.log"):
                yield self
        finally:
            task_executor.execute_single_task = original


def console_stream() -> TextIO:
    """The terminal, as it is now (a copy of descriptor 1, unaffected by later redirections)."""
    sys.stdout.flush()
    return os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")


def quietly(console: StepConsole | None, label: str, log_name: str) -> Any:
    """``console.phase(...)``, or nothing when there is no console (``--verbose``)."""
    return console.phase(label, log_name) if console is not None else nullcontext()


def add_console_arguments(parser: Any) -> None:
    """``run-local``'s ``--artifacts`` and ``--verbose`` (``pipelines.cli run-local`` passes them on)."""
    parser.add_argument(
        "--artifacts",
        choices=("local", "s3"),
        default="local",
        help="where the steps keep their inputs and outputs: the run directory, or a local S3 server "
        "(SeaweedFS, its data under the run directory) as on a cluster (default: %(default)s)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print every step's full output (kfp.local's) to the console"
    )
