"""Command-line plumbing shared by longrl's CLIs: step configs become commands, errors become messages.

A step's config class is its command: every field is a flag (with the field's description as
help), and ``--config FILE`` reads the same fields from YAML or JSON, flags winning over it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import CliApp, CliSettingsSource

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class UsageError(ValueError):
    """A command was called wrongly; the message says how to call it right."""


def merge_options(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` on top of ``base``; nested sections (dicts) are merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_options(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a YAML or JSON file, or JSON in an environment variable (``env:NAME``)."""
    if str(path).startswith("env:"):
        name = str(path)[4:]
        if name not in os.environ:
            raise UsageError(f"--config {path}: environment variable {name} is not set")
        try:
            loaded = json.loads(os.environ[name])
        except json.JSONDecodeError as exc:
            raise UsageError(f"--config {path}: not valid JSON: {exc}") from exc
        return _normalise_keys(loaded, str(path))
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsageError(
            f"--config {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    return _normalise_keys(loaded, str(path))


def _normalise_keys(loaded: Any, source: str) -> dict[str, Any]:
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {source}: expected a mapping of option names to values")
    return {
        str(key).replace("-", "_"): _normalise_keys(value, source) if isinstance(value, dict) else value
        for key, value in loaded.items()
    }


class ConfigFileOption(BaseModel):
    """Adds ``--config FILE`` to a command; values given as flags override the file's."""

    config: Path | None = Field(None, description="YAML or JSON file of options; flags override its values")

    @classmethod
    def option_defaults(cls, flags: dict[str, Any]) -> dict[str, Any]:
        """Values beneath the config file's (a preset, say); none by default."""
        return {}

    @model_validator(mode="before")
    @classmethod
    def _merge_config_file(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from_file = read_config_file(data["config"]) if data.get("config") else {}
        return merge_options(merge_options(cls.option_defaults(data), from_file), data)

    def step_config(self, config_type: type[ConfigT]) -> ConfigT:
        """The step's own config, without the command-line-only fields."""
        return config_type.model_validate(self.model_dump(exclude={"config", "preset"}))


def _explain(error: ValidationError, app: type[BaseModel]) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        if len(loc) > 1 and loc[0] in app.model_fields:  # drop the subcommand's name
            loc = loc[1:]
        where = ".".join(str(part) for part in loc) or "options"
        lines.append(f"  --{where.replace('_', '-')}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid options:\n" + "\n".join(lines)


DEBUG_FLAG = "--debug"


def run_cli(
    app: type[BaseModel],
    prog: str,
    argv: list[str] | None = None,
    known_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Runs a pydantic-settings CLI app; bad options and known failures print a message, not a traceback.

    Exit codes: 2 for a wrong call (bad options, inputs refused by a pre-flight check), 1 for a known
    failure. ``--debug`` (anywhere on the command line, every command has it) lets the error through with
    its traceback instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [arg for arg in args if arg != DEBUG_FLAG]
    source = CliSettingsSource(app, cli_prog_name=prog, cli_kebab_case=True, cli_implicit_flags=True)
    try:
        CliApp.run(app, cli_args=args, cli_settings_source=source)
    except (ValidationError, UsageError, *known_errors) as exc:
        if debug:
            raise
        if isinstance(exc, ValidationError):
            print(f"error: {_explain(exc, app)}", file=sys.stderr)
            return 2
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    return 0
