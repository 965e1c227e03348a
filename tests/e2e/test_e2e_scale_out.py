"""Two service processes on one PostgreSQL: a web chat reply reaches the page held by the other."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from service_fakes import free_port, write_config

from pg_helpers import PG_URL, fresh_pg_schema_sync
from service_process import ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _pg_config(tmp_path: Path, schema: str) -> Path:
    return write_config(
        tmp_path,
        provider_base="http://127.0.0.1:9",  # never used: web chat only
        database=PG_URL,
        extra=f"database_schema: {schema}\nlive: postgres",
    )


@contextmanager
def _services(
    config: Path, directory: Path, *options: Sequence[str], within: float = 40
) -> Iterator[list[ServiceProcess]]:
    """Start one `civicchat serve CONFIG` process per options list (all at once), wait until each
    answers /readyz, and stop them afterwards."""
    command = [sys.executable, "-m", "civicchat.cli.serve", "serve", str(config)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)}
    procs: list[subprocess.Popen[bytes]] = []
    services: list[ServiceProcess] = []
    try:
        for n, extra in enumerate(options):
            port = free_port()
            service = ServiceProcess(f"http://127.0.0.1:{port}", directory / f"service{n}.log")
            with service.log.open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [*command, "--port", str(port), *extra],
                        cwd=directory,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            services.append(service)
        for proc, service in zip(procs, services, strict=True):
            deadline = time.monotonic() + within
            while True:
                assert proc.poll() is None, f"a service exited:\n{service.log.read_text()}"
                try:
                    if httpx.get(f"{service.base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"no start:\n{service.log.read_text()}"
                time.sleep(0.1)
        yield services
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with (
        fresh_pg_schema_sync() as schema,
        # The first process (the one holding the page) has no workers: the reply is sent by
        # the second and must cross over LISTEN/NOTIFY.
        _services(_pg_config(tmp_path, schema), tmp_path, ["--no-workers"], []) as (one, two),
    ):
        yield one.base, two.base


def test_web_chat_reply_reaches_the_page_held_by_the_other_process(two_processes):
    page_host, post_host = two_processes
    visitor = "scaleout_" + uuid.uuid4().hex
    events: list[dict[str, object]] = []
    connected = threading.Event()

    def listen() -> None:
        url = f"{page_host}/chat/mataro-web/events"
        with httpx.stream("GET", url, params={"visitor": visitor}, timeout=20) as response:
            connected.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) >= 2:
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert connected.wait(10)
    time.sleep(0.3)  # the subscription is registered once the stream has started
    response = httpx.post(
        f"{post_host}/webhooks/webchat/mataro-web",
        json={"visitor": visitor, "id": "m1", "text": "PARAULES CLAU"},
        timeout=10,
    )
    assert response.status_code == 200
    thread.join(20)
    bodies = [e["content"]["body"] for e in events]  # type: ignore[index]
    assert len(bodies) == 2
    assert bodies[1].startswith("*Paraules clau*")


def test_serve_with_two_processes_shares_migrations_operators_and_sessions(tmp_path: Path):
    with fresh_pg_schema_sync() as schema:
        config = _pg_config(tmp_path, schema)
        text_ = config.read_text().replace("demo_operators: false", "demo_operators: true")
        config.write_text(text_.replace('secret_key: "' + "k" * 40 + '"', 'secret_key: ""'))
        with _services(config, tmp_path, ["--workers", "2"]) as (service,):
            password = next(
                line.split()[1]
                for line in service.log.read_text().splitlines()
                if line.strip().startswith("operadora ")
            )
            with httpx.Client(base_url=service.base, timeout=10) as client:
                form = client.get("/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
                assert token
                done = client.post(
                    "/login",
                    data={"login": "operadora", "password": password, "csrf_token": token.group(1)},
                )
                assert done.status_code == 303
                # Requests land on either process: both accept the session.
                codes = {client.get("/console").status_code for _ in range(20)}
                assert codes == {200}
