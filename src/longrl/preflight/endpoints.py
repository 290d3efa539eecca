"""Checks of the services a step talks to: the judge's OpenAI-compatible endpoint, a port to serve on."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from longrl.preflight.inputs import problem

if TYPE_CHECKING:
    from longrl.rewards.judge import JudgeConfig

TIMEOUT_S = 5.0


def judge_problems(judge: JudgeConfig, option: str = "judge") -> list[str]:
    """The judge answers ``GET {base_url}/models`` and lists the model the step will ask for."""
    import httpx

    url = judge.base_url.rstrip("/") + "/models"
    where = f"{option}.base_url"
    key = os.environ.get(judge.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    remedy = (
        "start the verifier (python -m longrl.serving) or fix the URL; reward=rule trains without a judge"
    )
    try:
        response = httpx.get(url, headers=headers, timeout=min(TIMEOUT_S, judge.timeout_s))
    except httpx.HTTPError as exc:
        return [problem(where, judge.base_url, f"no answer from GET {url} ({type(exc).__name__}): {remedy}")]
    if response.status_code in (401, 403):
        return [
            problem(
                where,
                judge.base_url,
                f"GET {url} refused the API key (HTTP {response.status_code}): set {judge.api_key_env}",
            )
        ]
    if response.status_code != 200:
        return [problem(where, judge.base_url, f"GET {url} answered HTTP {response.status_code}: {remedy}")]
    try:
        served = [str(item["id"]) for item in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return [
            problem(
                where, judge.base_url, f"GET {url} did not answer an OpenAI model list: is it the verifier?"
            )
        ]
    if judge.model not in served:
        return [
            problem(
                f"{option}.model",
                judge.model,
                f"{url} serves {', '.join(served) or 'no model'}, not this one: set {option}.model to the "
                "verifier's --served-model-name",
            )
        ]
    return []


def port_problems(host: str, port: int) -> list[str]:
    """The port is free to listen on (0: any free port, always)."""
    if port == 0:
        return []
    with socket.socket() as sock:
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as the server does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            return [
                problem(
                    "port",
                    str(port),
                    f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another "
                    "port, or 0 for any free one",
                )
            ]
    return []
