"""Two service processes on one PostgreSQL: a web chat reply reaches the page held by the other."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_fakes import free_port, write_config
from sqlalchemy import text

from civicchat.storage.engine import create_engine, upgrade

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SERVE = [sys.executable, "-m", "civicchat.cli.serve", "serve"]

PG_URL = os.environ.get(
    "CIVICCHAT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def _schema(action: str, name: str) -> None:
    engine = create_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(f"{action} SCHEMA {name}{' CASCADE' if action == 'DROP' else ''}")
            )
    finally:
        await engine.dispose()
    if action == "CREATE":
        engine = create_engine(PG_URL, schema=name)
        await upgrade(engine)
        await engine.dispose()


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[str, str]]:
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_schema("CREATE", schema))
    except Exception as exc:
        message = f"PostgreSQL at {PG_URL} is unreachable: {type(exc).__name__}"
        if os.environ.get("CIVICCHAT_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    config = write_config(
        tmp_path,
        provider_base="http://127.0.0.1:9",  # never used: web chat only
        database=PG_URL,
        extra=f"database_schema: {schema}\nlive: postgres",
    )
    procs, bases = [], []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    try:
        for n in range(2):
            port = free_port()
            command = [sys.executable, "-m", "civicchat.cli.serve", "serve", str(config)]
            with (tmp_path / f"service{n}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        # The first process (the one holding the page) has no workers: the
                        # reply is sent by the second and must cross over LISTEN/NOTIFY.
                        [*command, "--port", str(port), *(["--no-workers"] if n == 0 else [])],
                        cwd=tmp_path,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            bases.append(f"http://127.0.0.1:{port}")
        for proc, base in zip(procs, bases, strict=True):
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, "a service process exited"
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "a service process did not start"
                time.sleep(0.1)
        yield bases[0], bases[1]
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(_schema("DROP", schema))


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
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_schema("CREATE", schema))
    except Exception as exc:
        if os.environ.get("CIVICCHAT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
    config = write_config(
        tmp_path,
        provider_base="http://127.0.0.1:9",
        database=PG_URL,
        extra=f"database_schema: {schema}\nlive: postgres",
    )
    text_ = config.read_text().replace("demo_operators: false", "demo_operators: true")
    config.write_text(text_.replace('secret_key: "' + "k" * 40 + '"', 'secret_key: ""'))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*SERVE, str(config), "--port", str(port), "--workers", "2"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        password = next(
            line.split()[1]
            for line in log.read_text().splitlines()
            if line.strip().startswith("operadora ")
        )
        with httpx.Client(base_url=base, timeout=10) as client:
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
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        asyncio.run(_schema("DROP", schema))
