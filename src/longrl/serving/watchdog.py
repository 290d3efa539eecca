"""``python -m longrl.serving.watchdog [--watch-pid PID] -- COMMAND...``: runs COMMAND and stops it
when this process is told to stop (SIGTERM/SIGINT) or when PID exits, whichever comes first."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longrl.serving.watchdog", description=__doc__)
    parser.add_argument("--watch-pid", type=int, default=None, help="stop the command when this process ends")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    child = subprocess.Popen(command)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while child.poll() is None and not stopping:
        if args.watch_pid and not alive(args.watch_pid):
            break
        time.sleep(1.0)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
