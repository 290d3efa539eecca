"""``python -m longrl.serving``: serve a verifier (the LLM judge) on this machine until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading

from pydantic import Field

from longrl.cli import ConfigFileOption, run_cli
from longrl.preflight import require, verifier_problems
from longrl.serving.config import VerifierConfig
from longrl.serving.local import LocalVerifier, ServingError


class ServeCommand(ConfigFileOption, VerifierConfig):
    """Start vLLM's OpenAI-compatible server for the judge model, print its URL, stop it on Ctrl-C."""

    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0: any free port)")
    host: str = Field("127.0.0.1", description="Address to listen on")
    log_file: str = Field("verifier.log", description="Where the server's output goes")

    def cli_cmd(self) -> None:
        config = VerifierConfig.model_validate(
            self.model_dump(exclude={"config", "port", "host", "log_file"})
        )
        require("verifier", verifier_problems(config, host=self.host, port=self.port, log_file=self.log_file))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with LocalVerifier(config, self.log_file, port=self.port, host=self.host) as endpoint:
            print(
                f"verifier '{config.served_model_name}' ready at {endpoint} (log: {self.log_file}); Ctrl-C stops it"
            )
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
        print("verifier stopped")


if __name__ == "__main__":
    sys.exit(run_cli(ServeCommand, "python -m longrl.serving", known_errors=(ServingError,)))
