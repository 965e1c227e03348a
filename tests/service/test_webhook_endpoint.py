"""The webhook endpoint's HTTP edges (plain ASGI in front of the routes) and the group commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_fakes import WA_VERIFY, running, signed_headers, start_service, wa_text

from civicchat.messages import InboundMessage, Sender, Text
from civicchat.service.metrics import ServiceMetrics
from civicchat.service.webhooks import InboxBatcher, IngressGate, WebhookEndpoint
from civicchat.storage.base import AcceptResult

TS = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())
WA = "/webhooks/whatsapp/mataro-wa"


# ----------------------------------------------------------------------------- HTTP edges


@pytest.fixture
async def app(tmp_path: Path) -> Any:
    app, _fake, provider, _ = await start_service(tmp_path)
    async with running(app):
        yield app
    await provider.aclose()


def _client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, **kwargs)
    return httpx.AsyncClient(transport=transport, base_url="http://s")


async def test_another_method_is_405_with_allow_and_other_paths_reach_the_routes(app):
    async with _client(app) as c:
        put = await c.put(WA, content=b"{}")
        assert put.status_code == 405
        assert put.headers["allow"] == "GET, HEAD, POST"
        # Not /webhooks/{channel}/{account}: the app's router answers (no such route).
        assert (await c.post("/webhooks/whatsapp", content=b"{}")).status_code == 404
        assert (await c.post(f"{WA}/extra", content=b"{}")).status_code == 404
        assert (await c.post("/webhooks//mataro-wa", content=b"{}")).status_code == 404
        assert (await c.get("/healthz")).status_code == 200


async def test_answers_carry_type_and_length_and_the_first_query_value_counts(app):
    async with _client(app) as c:
        r = await c.get(
            f"{WA}?hub.mode=subscribe&hub.verify_token={WA_VERIFY}"
            "&hub.challenge=first&hub.challenge=second"
        )
        assert (r.status_code, r.text) == (200, "first")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["content-length"] == "5"
        refused = await c.post(WA, content=b"{}", headers={"x-hub-signature-256": "sha256=00"})
        assert refused.status_code in (401, 403)
        assert refused.headers["content-type"] == "text/plain; charset=utf-8"


async def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(app):
    limit = app.state.civicchat.config.server.max_body_bytes

    async def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    async with _client(app) as c:
        announced = await c.post(WA, content=b"{}", headers={"content-length": str(limit + 1)})
        assert announced.status_code == 413
        streamed = await c.post(WA, content=chunks())  # chunked: no length announced
        assert streamed.status_code == 413
    assert sum((await app.state.civicchat.store.state_counts()).values()) == 0


async def _call(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[Any]:
    """Run the ASGI app directly; returns what it sent."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _scope(path: str, method: str = "POST", **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"s")],
        "client": ("127.0.0.1", 5000),
        "server": ("s", 80),
        **extra,
    }


async def test_a_client_gone_mid_body_is_400_and_stores_nothing(app):
    body = wa_text("wamid.gone", "hola", ts=TS)
    scope = _scope(WA)
    scope["headers"] += [(k.encode(), v.encode()) for k, v in signed_headers(body).items()]
    sent = await _call(app, scope, [{"type": "http.request", "body": body[:10], "more_body": True}])
    assert sent[0]["status"] == 400
    assert sum((await app.state.civicchat.store.state_counts()).values()) == 0


async def test_a_body_in_several_parts_and_a_root_path_are_handled(app):
    body = wa_text("wamid.parts", "hola", ts=TS)
    scope = _scope("/civic" + WA, root_path="/civic")
    scope["headers"] += [(k.encode(), v.encode()) for k, v in signed_headers(body).items()]
    parts = [
        {"type": "http.request", "body": body[:7], "more_body": True},
        {"type": "http.request", "body": body[7:], "more_body": False},
    ]
    sent = await _call(app, scope, parts)
    assert sent[0]["status"] == 200
    assert sum((await app.state.civicchat.store.state_counts()).values()) == 1


async def test_an_unexpected_error_is_a_500_from_the_error_middleware(app):
    account = app.state.civicchat.accounts["mataro-wa"]

    def broken(_request: Any) -> Any:
        raise RuntimeError("a bug in an adapter")

    account.channel.handle_webhook = broken
    async with _client(app, raise_app_exceptions=False) as c:
        body = wa_text("wamid.bug", "hola", ts=TS)
        r = await c.post(WA, content=body, headers=signed_headers(body))
    assert r.status_code == 500


# ----------------------------------------------------------------------------- group commit


T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _message(n: int, sender: str) -> InboundMessage:
    return InboundMessage(
        channel="whatsapp",
        account="wa",
        provider_message_id=f"wamid.{sender}.{n}",
        sender=Sender(id=sender),
        timestamp=T0 + timedelta(seconds=n),
        content=Text(body=f"m{n}"),
    )


class _SlowStore:
    """Records each commit; a commit ends when the test releases it."""

    def __init__(self) -> None:
        self.commits: list[list[str]] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.fail_next = False

    async def accept(self, events: Any) -> AcceptResult:
        self.commits.append([e.provider_message_id for e in events])
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            if self.fail_next:
                self.fail_next = False
                raise OSError("disk full")
        finally:
            self.running -= 1
        return AcceptResult(accepted=len(events), duplicates=0, revived=0)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_commits_run_side_by_side_and_a_conversation_keeps_its_order():
    store = _SlowStore()
    batcher = InboxBatcher(store, ServiceMetrics(), max_commits=3)  # type: ignore[arg-type]
    first = asyncio.create_task(batcher.accept([_message(1, "A")]))
    await _settle()  # commit 1 runs with A
    later = [
        asyncio.create_task(batcher.accept([_message(2, "A")])),  # A is in a running commit
        asyncio.create_task(batcher.accept([_message(3, "B")])),
        asyncio.create_task(batcher.accept([_message(4, "A")])),
        asyncio.create_task(batcher.accept([_message(5, "C")])),
    ]
    await _settle()
    # B and C went into a second commit beside the first; A's later messages wait.
    assert store.commits == [["wamid.A.1"], ["wamid.B.3", "wamid.C.5"]]
    assert store.most_at_once == 2
    store.release.set()
    await asyncio.gather(first, *later)
    # A's later messages in one commit, after the first, in arrival order.
    assert store.commits[2:] == [["wamid.A.2", "wamid.A.4"]]
    assert batcher._busy == {}  # nothing left marked as committing


async def test_one_commit_at_a_time_when_asked_and_batches_stay_under_max_batch():
    store = _SlowStore()
    batcher = InboxBatcher(store, ServiceMetrics(), max_batch=2)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(batcher.accept([_message(n, f"S{n}")])) for n in range(5)]
    await _settle()
    assert store.most_at_once == 1
    store.release.set()
    await asyncio.gather(*tasks)
    assert [len(c) for c in store.commits] == [2, 2, 1]  # all five waited for the first
    assert [m for c in store.commits for m in c] == [f"wamid.S{n}.{n}" for n in range(5)]
    assert store.most_at_once == 1


async def test_a_failed_commit_fails_only_its_callers_and_a_cancelled_caller_is_still_stored():
    store = _SlowStore()
    batcher = InboxBatcher(store, ServiceMetrics(), max_commits=2)  # type: ignore[arg-type]
    store.fail_next = True
    failing = asyncio.create_task(batcher.accept([_message(1, "A")]))
    await _settle()
    cancelled = asyncio.create_task(batcher.accept([_message(2, "B")]))
    await _settle()
    cancelled.cancel()
    store.release.set()
    with pytest.raises(OSError, match="disk full"):
        await failing
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await _settle()
    # The cancelled caller's events were committed all the same (its wait only was cancelled).
    assert store.commits == [["wamid.A.1"], ["wamid.B.2"]]
    ok = await batcher.accept([_message(3, "A")])
    assert ok is None
    assert store.commits[-1] == ["wamid.A.3"]


def test_batcher_arguments_are_checked():
    with pytest.raises(ValueError, match="max_commits"):
        InboxBatcher(_SlowStore(), ServiceMetrics(), max_commits=0)  # type: ignore[arg-type]


async def test_a_trailing_slash_and_a_root_path_not_in_the_path_are_the_same_endpoint(app):
    query = f"hub.mode=subscribe&hub.verify_token={WA_VERIFY}&hub.challenge=42"
    async with _client(app) as c:
        r = await c.get(f"{WA}/?{query}")
        assert (r.status_code, r.text) == (200, "42")
    # A server that gives root_path without putting it in path: the path is used as it is.
    scope = _scope(WA, method="GET", root_path="/web", query_string=query.encode())
    sent = await _call(app, scope, [{"type": "http.request", "body": b""}])
    assert (sent[0]["status"], sent[1]["body"]) == (200, b"42")


async def test_a_backlog_over_max_batch_runs_side_by_side_and_one_conversation_waits_in_order():
    store = _SlowStore()
    batcher = InboxBatcher(store, ServiceMetrics(), max_batch=1, max_commits=3)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(batcher.accept([_message(n, f"S{n}")])) for n in range(3)]
    await _settle()
    assert store.most_at_once == 3  # three conversations, one event a batch: three commits
    store.release.set()
    await asyncio.gather(*tasks)
    store.release.clear()
    first = asyncio.create_task(batcher.accept([_message(10, "A")]))
    await _settle()
    blocked = [asyncio.create_task(batcher.accept([_message(n, "A")])) for n in (11, 12)]
    await _settle()
    assert store.commits[-1] == ["wamid.A.10"]  # A's later events wait for its running commit
    store.release.set()
    await asyncio.gather(first, *blocked)
    assert store.commits[-3:] == [["wamid.A.10"], ["wamid.A.11"], ["wamid.A.12"]]


async def test_a_batcher_task_cancelled_mid_commit_leaves_no_caller_waiting():
    store = _SlowStore()
    batcher = InboxBatcher(store, ServiceMetrics())  # type: ignore[arg-type]
    running = asyncio.create_task(batcher.accept([_message(1, "A")]))
    await _settle()
    waiting = asyncio.create_task(batcher.accept([_message(2, "B")]))
    await _settle()
    (task,) = batcher._tasks
    task.cancel()  # as the loop does to tasks left at shutdown
    done, pending = await asyncio.wait([running, waiting], timeout=1)
    assert not pending
    assert all(t.cancelled() for t in done)
    assert batcher._running == 0
    assert batcher._busy == {}


# ----------------------------------------------------------------------------- webhooks first


async def test_the_gate_counts_webhooks_in_flight_and_the_workers_share_it(app):
    gate = app.state.civicchat.runtime.pacer
    assert isinstance(gate, IngressGate)
    assert gate.busy_at == 16  # the config's default
    body = wa_text("wamid.flight", "hola", ts=TS)
    scope = _scope(WA)
    scope["headers"] += [(k.encode(), v.encode()) for k, v in signed_headers(body).items()]
    release = asyncio.Event()
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        await release.wait()  # the provider is still sending the body
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    task = asyncio.create_task(app(scope, receive, send))
    for _ in range(50):
        await asyncio.sleep(0)
        if gate.in_flight:
            break
    assert gate.in_flight == 1
    assert b"civicchat_webhooks_in_flight 1.0" in app.state.civicchat.metrics.render()
    release.set()
    await task
    assert sent[0]["status"] == 200
    async with _client(app) as c:  # refusals and errors leave the count too
        assert (await c.post(WA, content=b"{}")).status_code in (401, 403)
        assert (await c.post("/webhooks/whatsapp/nobody", content=b"{}")).status_code == 404
    assert gate.in_flight == 0


async def test_a_worker_waits_its_turn_while_webhooks_queue_up_and_never_longer_than_max_wait():
    gate = IngressGate(2, max_wait=5.0)
    await asyncio.wait_for(gate.turn(), 0.1)  # calm: at once
    gate.enter()
    gate.enter()
    assert gate.busy
    waiting = asyncio.create_task(gate.turn())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    gate.leave()  # one answered: below busy_at again
    await asyncio.wait_for(waiting, 0.1)
    assert gate.deferred == 1
    gate.enter()
    short = IngressGate(1, max_wait=0.05)
    short.enter()  # stays busy
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(short.turn(), 1.0)  # max_wait passed: the worker goes anyway
    assert asyncio.get_running_loop().time() - started >= 0.04
    off = IngressGate(0)
    for _ in range(100):
        off.enter()
    assert not off.busy
    with pytest.raises(ValueError, match="busy_at"):
        IngressGate(-1)


async def test_the_metrics_show_the_webhooks_in_flight_and_the_deferred_rounds():
    metrics = ServiceMetrics()
    gate = IngressGate(1, max_wait=0.01)
    metrics.watch_gate(gate)
    gate.enter()
    await gate.turn()
    await gate.turn()
    text = metrics.render().decode()
    assert "civicchat_webhooks_in_flight 1.0" in text
    assert "civicchat_worker_rounds_deferred_total 2.0" in text
    gate.leave()
    assert "civicchat_webhooks_in_flight 0.0" in metrics.render().decode()


def _batcher(app: Any) -> InboxBatcher:
    (webhooks,) = [m for m in app.user_middleware if m.cls is WebhookEndpoint]
    batcher: InboxBatcher = webhooks.kwargs["ctx"].batcher
    return batcher


async def test_the_group_commits_running_at_once_come_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "set").mkdir()
    app, _fake, provider, _ = await start_service(tmp_path / "default")
    assert _batcher(app).max_commits == 1  # SQLite: one writer
    await provider.aclose()
    app, _fake, provider, _ = await start_service(
        tmp_path / "set", extra="server: {inbox_commits: 3}"
    )
    assert _batcher(app).max_commits == 3
    await provider.aclose()
