"""The Mataró service as a subprocess, against a local fake Graph API and Bot API."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_fakes import (
    FakeProviders,
    free_port,
    serve_in_thread,
    signed_headers,
    wa_message,
    wa_text,
    write_config,
)

from civicchat.storage.sql import open_store
from service_process import serve_process

pytestmark = pytest.mark.slow

MONDAY_10 = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())
SATURDAY_21 = int(datetime(2026, 11, 28, 20, 0, tzinfo=UTC).timestamp())


@dataclass
class Running:
    base: str
    fake: FakeProviders
    directory: Path
    db_url: str
    log: Path

    def post_whatsapp(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.base}/webhooks/whatsapp/mataro-wa",
            content=body,
            headers=headers or signed_headers(body),
            timeout=10,
        )

    def texts_to(self, recipient: str) -> list[str]:
        out = []
        for body in self.fake.sent("whatsapp"):
            if body.get("to") != recipient:
                continue
            if body.get("type") == "text":
                out.append(body["text"]["body"])
            elif body.get("type") == "interactive":
                out.append(body["interactive"]["body"]["text"])
            else:
                out.append(f"<{body.get('type')}>")
        return out

    def password(self, login: str) -> str:
        """The demo operator's password, printed once by the service on first start."""
        for line in self.log.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == login:
                return parts[1]
        raise AssertionError(f"no password for {login} in the service output")

    def inbox_total(self) -> float:
        metrics = httpx.get(f"{self.base}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("civicchat_inbox_events{")
        )


def wait_until(predicate: Callable[[], Any], within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeProviders, str]]:
    fake = FakeProviders()
    with serve_in_thread(fake.app(), free_port()) as base:
        yield fake, base


def _start(directory: Path, fake: FakeProviders, base: str, clock: str) -> Iterator[Running]:
    directory.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite+aiosqlite:///{directory / 'e2e.db'}"
    config = write_config(directory, provider_base=base, clock=clock, database=db_url)
    config.write_text(
        config.read_text().replace("demo_operators: false", "demo_operators: true"),
        encoding="utf-8",
    )
    with serve_process(config, directory) as process:
        yield Running(process.base, fake, directory, db_url, process.log)


@pytest.fixture(scope="module")
def in_hours(
    tmp_path_factory: pytest.TempPathFactory, fake_server: tuple[FakeProviders, str]
) -> Iterator[Running]:
    fake, base = fake_server
    directory = tmp_path_factory.mktemp("in-hours")
    yield from _start(directory, fake, base, "start: 2026-11-30T10:00:00+01:00")


@pytest.fixture(scope="module")
def out_of_hours(
    tmp_path_factory: pytest.TempPathFactory, fake_server: tuple[FakeProviders, str]
) -> Iterator[Running]:
    fake, base = fake_server
    directory = tmp_path_factory.mktemp("out-of-hours")
    yield from _start(directory, fake, base, "fixed: 2026-11-28T21:00:00+01:00")


def test_paraules_clau_gets_the_catalan_index(in_hours: Running):
    who = "34600000001"
    assert (
        in_hours.post_whatsapp(
            wa_text("wamid.e2e.1", "PARAULES CLAU", ts=MONDAY_10, sender=who)
        ).status_code
        == 200
    )
    texts = wait_until(lambda: len(in_hours.texts_to(who)) >= 2 and in_hours.texts_to(who))
    assert texts[1].startswith("*Paraules clau*")
    assert "Escriu una d'aquestes paraules" in texts[1]


def test_horario_autobus_gets_the_spanish_bus_reply(in_hours: Running):
    who = "34600000002"
    in_hours.post_whatsapp(wa_text("wamid.e2e.2", "horario autobús", ts=MONDAY_10, sender=who))
    texts = wait_until(lambda: len(in_hours.texts_to(who)) >= 2 and in_hours.texts_to(who))
    assert texts[0].startswith("¡Hola! Estás en el canal")  # the privacy notice, in Spanish
    assert "autobús urbano" in texts[1]
    assert "/es/" in texts[1]  # the Spanish page, not the Catalan one
    # Text, network plan and buttons arrive as ONE interactive message, not three.
    time.sleep(1.0)  # a second or third message would come right behind it
    sent = [b for b in in_hours.fake.sent("whatsapp") if b.get("to") == who]
    assert len(sent) == 2
    bubble = sent[1]["interactive"]
    assert bubble["type"] == "button"
    assert bubble["header"]["type"] == "document"
    assert bubble["header"]["document"]["link"].endswith("planol-xarxa-mataro-bus.pdf")
    assert bubble["header"]["document"]["filename"] == "planol-xarxa-mataro-bus.pdf"
    titles = [b["reply"]["title"] for b in bubble["action"]["buttons"]]
    assert titles == ["Tarjetas y tarifas", "Bus interurbano", "Tren"]


def test_unknown_text_out_of_hours_gets_the_next_opening(out_of_hours: Running):
    who = "34600000003"
    out_of_hours.post_whatsapp(
        wa_text("wamid.e2e.3", "hola, tinc un dubte personal", ts=SATURDAY_21, sender=who)
    )
    texts = wait_until(lambda: len(out_of_hours.texts_to(who)) >= 2 and out_of_hours.texts_to(who))
    assert "tancada" in texts[1]
    assert "dilluns a les 8:00" in texts[1]


def test_in_hours_queued_then_an_operator_answer_reaches_the_graph_api(in_hours: Running):
    who = "34600000004"
    in_hours.post_whatsapp(
        wa_text("wamid.e2e.4", "hola, tinc un dubte personal", ts=MONDAY_10, sender=who)
    )
    texts = wait_until(lambda: len(in_hours.texts_to(who)) >= 2 and in_hours.texts_to(who))
    assert "t'atendrà una persona" in texts[1]

    async def conversation_id() -> int:
        store = await open_store(in_hours.db_url)
        try:
            async with store.transaction() as tx:
                convs = await tx.conversations.list("mataro-wa", states=["queued"])
            return next(c.id for c in convs if c.recipient_id == who)
        finally:
            await store.close()

    cid = asyncio.run(conversation_id())
    with httpx.Client(base_url=in_hours.base, timeout=10) as console:
        csrf = console_login(console, "operadora", in_hours.password("operadora"))
        page = console.get(f"/console/conversations/{cid}")
        assert page.status_code == 200
        assert "hola, tinc un dubte personal" in page.text
        answer = console.post(
            f"/console/conversations/{cid}/reply",
            data={"csrf_token": csrf, "kind": "text", "body": "Bon dia! Sóc la Marta, del 010."},
        )
        assert answer.status_code in (200, 303)
    wait_until(lambda: any("Sóc la Marta" in t for t in in_hours.texts_to(who)))


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"|<meta name="csrf-token" content="([^"]*)">')


def console_login(client: httpx.Client, login: str, password: str) -> str:
    """Log in through the console's form; returns the session's CSRF token."""
    form = client.get("/login")
    token = _CSRF.search(form.text)
    assert token, "no CSRF token on the login page"
    done = client.post(
        "/login",
        data={"login": login, "password": password, "csrf_token": token.group(1) or token.group(2)},
    )
    assert done.status_code == 303, done.text
    page = client.get("/console")
    found = _CSRF.search(page.text)
    assert found
    return found.group(1) or found.group(2)


def test_photo_then_location_media_is_downloaded_and_stored(in_hours: Running):
    who = "34600000005"
    photo = wa_message(
        "wamid.e2e.5a",
        "image",
        {"id": "777000111", "mime_type": "image/jpeg"},
        ts=MONDAY_10,
        sender=who,
    )
    where = wa_message(
        "wamid.e2e.5b",
        "location",
        {"latitude": 41.5381, "longitude": 2.4445},
        ts=MONDAY_10 + 5,
        sender=who,
    )
    assert in_hours.post_whatsapp(photo).status_code == 200
    assert in_hours.post_whatsapp(where).status_code == 200
    paths = [r.path for r in in_hours.fake.requests]
    wait_until(lambda: "/download/777000111" in [r.path for r in in_hours.fake.requests])
    assert any(p.endswith("/777000111") for p in paths + [r.path for r in in_hours.fake.requests])
    media_dir = in_hours.directory / "media"
    files = wait_until(
        lambda: [p for p in media_dir.rglob("*") if p.is_file() and not p.name.startswith(".tmp")]
    )
    assert files[0].read_bytes().startswith(b"\xff\xd8")

    async def stored() -> list[str]:
        store = await open_store(in_hours.db_url)
        try:
            async with store.transaction() as tx:
                convs = await tx.conversations.list("mataro-wa")
                conv = next(c for c in convs if c.recipient_id == who)
                records = await tx.conversation_messages(conv.id)
            return [json.loads(r.content_json)["kind"] for r in records if r.direction == "in"]
        finally:
            await store.close()

    # Both messages end up in the conversation, in order (the location may still be in the inbox).
    wait_until(lambda: asyncio.run(stored()) == ["media", "location"])
    with httpx.Client(base_url=in_hours.base, timeout=10) as console:
        console_login(console, "operador", in_hours.password("operador"))
        cid = asyncio.run(conversation_of(in_hours, who))
        page = console.get(f"/console/conversations/{cid}")
        assert page.status_code == 200
        media = re.search(rf'/console/conversations/{cid}/media/([^"\']+)', page.text)
        assert media, "the photo is not shown in the console"
        image = console.get(media.group(0))
        assert image.status_code == 200
        assert image.content.startswith(b"\xff\xd8")
        assert "openstreetmap.org" in page.text  # the location as a map link


async def conversation_of(running: Running, who: str) -> int:
    store = await open_store(running.db_url)
    try:
        async with store.transaction() as tx:
            convs = await tx.conversations.list("mataro-wa")
        return next(c.id for c in convs if c.recipient_id == who)
    finally:
        await store.close()


def test_the_same_webhook_five_times_gets_one_reply(in_hours: Running):
    who, control = "34600000006", "34600000016"
    body = wa_text("wamid.e2e.6", "horari bus", ts=MONDAY_10, sender=who)
    for _ in range(5):
        assert in_hours.post_whatsapp(body).status_code == 200
    # The same question asked once by someone else gives the size of one reply (the privacy
    # notice, then the bus answer as one message).
    in_hours.post_whatsapp(wa_text("wamid.e2e.16", "horari bus", ts=MONDAY_10, sender=control))
    wait_until(lambda: len(in_hours.texts_to(control)) >= 2)
    # Wait until nothing more arrives for either (a duplicate reply would arrive late).
    last: list[list[str]] = []

    def settled() -> bool:
        now = [in_hours.texts_to(who), in_hours.texts_to(control)]
        quiet = now == last[:2] if last else False
        last[:] = now
        return quiet

    def settled_for_a_second() -> bool:
        if not settled():
            return False
        time.sleep(1.0)
        return settled()

    wait_until(settled_for_a_second, within=20)
    assert in_hours.texts_to(who) == in_hours.texts_to(control)


def test_a_wrong_signature_gets_403_and_stores_nothing(in_hours: Running):
    before = in_hours.inbox_total()
    body = wa_text("wamid.e2e.7", "hola", ts=MONDAY_10, sender="34600000007")
    response = in_hours.post_whatsapp(body, headers=signed_headers(body, secret="wrong-secret"))
    assert response.status_code == 403
    assert in_hours.inbox_total() == before
    assert in_hours.texts_to("34600000007") == []
    # No message text or phone number in the service's log at INFO.
    log = in_hours.log.read_text(encoding="utf-8")
    assert "34600000004" not in log
    assert "vull parlar" not in log
