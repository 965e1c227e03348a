"""Run ``civicchat serve CONFIG`` as a real subprocess for end-to-end and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class ServiceProcess:
    base: str  # http://127.0.0.1:<port>
    log: Path  # what the service printed (stdout and stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_process(config: Path, directory: Path, *, within: float = 30) -> Iterator[ServiceProcess]:
    """Start the service on a free port in ``directory`` with a bare environment (no secrets
    inherited), wait until ``/readyz`` answers 200, and stop it afterwards."""
    port = _free_port()
    log = directory / "service.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)}
    command = [sys.executable, "-m", "civicchat.cli.serve", "serve", str(config)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = ServiceProcess(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + within
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the service exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{running.base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the service did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
