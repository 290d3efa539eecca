"""What the verifier (the LLM judge) is and how it is served, shared by both ways of serving it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VerifierConfig(BaseModel):
    """The judge model behind vLLM's OpenAI-compatible server."""

    model: str = Field(
        description="Model to serve: a local Hugging Face directory, an s3:// URI, or a hub name"
    )
    served_model_name: str = Field("verifier", description="Name clients ask for (the judge's 'model')")
    max_model_len: int = Field(8192, ge=256, description="Longest prompt + verdict the server accepts")
    dtype: str = Field("auto", description="Weights' dtype (auto, bfloat16, float16, float32)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU share vLLM may use (GPU servers)")
    cpu_kv_cache_gib: int = Field(
        1, ge=1, description="KV cache size on CPU servers, in GiB (VLLM_CPU_KVCACHE_SPACE)"
    )
    enforce_eager: bool = Field(
        False,
        description="Skip torch.compile (and CUDA graphs): a start ~20 s shorter on a CPU, slower decoding "
        "(the local verifier's choice, where it serves a tiny judge)",
    )
    extra_args: list[str] = Field(default_factory=list, description="More `vllm serve` arguments")
    startup_timeout_s: float = Field(900.0, gt=0, description="Give up if the server is not ready by then")

    def serve_args(self, model_path: str, port: int, host: str) -> list[str]:
        """``vllm serve`` arguments (the cluster's container)."""
        return ["serve", model_path, *self.server_options(port, host)]

    def local_command(self, python: str, model_path: str, port: int, host: str) -> list[str]:
        """The OpenAI server run as a module. vllm-cpu's ``vllm serve`` asks for the version of a
        distribution named "vllm" and fails, vllm-cpu being installed under another name."""
        module = "vllm.entrypoints.openai.api_server"
        return [python, "-m", module, "--model", model_path, *self.server_options(port, host)]

    def server_options(self, port: int, host: str) -> list[str]:
        options = {
            "--host": host,
            "--port": str(port),
            "--served-model-name": self.served_model_name,
            "--max-model-len": str(self.max_model_len),
            "--dtype": self.dtype,
            "--gpu-memory-utilization": str(self.gpu_memory_utilization),
        }
        eager = ["--enforce-eager"] if self.enforce_eager else []
        return [*(item for pair in options.items() for item in pair), *eager, *self.extra_args]
