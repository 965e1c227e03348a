"""Open311 GeoReport v2 against a local fake server built from the specification's examples."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from georeport_fake import API_KEY, BASE, SPEC_NOTICE, FakeGeoReport

from civicchat.cases.config import CasesConfig
from civicchat.cases.errors import Open311Error, Open311RejectedError, Open311TransientError
from civicchat.cases.memory import MemoryCaseStore
from civicchat.cases.models import (
    Case,
    CaseLocation,
    CaseStatus,
    ChangeKind,
    MediaRef,
    NewCase,
)
from civicchat.cases.open311 import (
    Open311Client,
    RetryPolicy,
    forward_case,
    map_remote_status,
    poll_case,
    signed_media_url,
    verify_media_signature,
    verify_signed_media_url,
    with_retries,
)
from civicchat.clock import ManualClock
from civicchat.exceptions import ConfigError
from civicchat.messages import MediaKind

SECRET = "a-media-secret-of-32-characters!"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def server(mataro_config: CasesConfig) -> FakeGeoReport:
    codes = {c.service_code for c in mataro_config.categories if c.service_code}
    return FakeGeoReport(codes=codes)


@pytest.fixture
async def http(server: FakeGeoReport) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=server.app())
    async with httpx.AsyncClient(transport=transport) as client:
        yield client


@pytest.fixture
def open311(http: httpx.AsyncClient) -> Open311Client:
    return Open311Client(http, BASE, api_key=API_KEY)


async def new_case(
    store: MemoryCaseStore,
    clock: ManualClock,
    *,
    category: str = "enllumenat",
    location: CaseLocation | None = None,
    description: str = "La farola no s'encén",
) -> Case:
    draft = NewCase(
        category=category,
        description=description,
        media=(MediaRef(media_kind=MediaKind.IMAGE, ref="wamid-photo-1", channel="whatsapp"),),
        location=location
        if location is not None
        else CaseLocation(latitude=41.5385, longitude=2.4447, address="Pl. de l'Ajuntament, 1"),
        channel="whatsapp",
        account="mataro",
        citizen_id="34600000001",
        department="manteniment",
    )
    return await store.create(draft, prefix="MTR", at=clock.now(), actor="citizen")


def photo_link(case: Case) -> str:
    expires = datetime(2026, 4, 30, tzinfo=UTC)
    media = case.media[0]
    return signed_media_url(
        "https://civic.mataro.test", f"{media.channel}:{media.ref}", SECRET, expires
    )


async def forward(reference: str, store, open311, config, clock, sleeps=None, attempts: int = 3):
    return await forward_case(
        reference,
        store=store,
        upkeep=store,
        client=open311,
        config=config,
        clock=clock,
        media_url=photo_link,
        retry=RetryPolicy(attempts=attempts, base_delay=1.0, factor=2.0),
        sleep=sleeps or Sleeps(),
    )


async def test_services_reads_the_specification_example(open311: Open311Client) -> None:
    services = await open311.services()
    assert [s.service_code for s in services] == ["001", "002"]
    assert services[0].service_name == "Cans left out 24x7"
    assert services[0].keywords == ("lorem", "ipsum", "dolor")
    assert services[1].group == "street"
    assert services[0].metadata is True


async def test_forward_posts_the_case_and_records_the_request_id(
    open311, server: FakeGeoReport, store: MemoryCaseStore, clock, mataro_config
) -> None:
    case = await new_case(store, clock)
    result = await forward(case.reference, store, open311, mataro_config, clock)

    assert result.ok
    assert result.attempts == 1
    assert result.submitted is not None
    assert result.submitted.service_request_id == "638344"
    assert result.submitted.service_notice == SPEC_NOTICE
    (form,) = server.posts
    assert form["api_key"] == API_KEY
    assert form["service_code"] == "MTR-ENL"
    assert (form["lat"], form["long"]) == ("41.538500", "2.444700")
    assert form["address_string"] == "Pl. de l'Ajuntament, 1"
    assert form["description"] == "[MTR-2026-000001] La farola no s'encén"
    assert "34600000001" not in str(form)  # no personal data leaves
    now = datetime(2026, 4, 1, tzinfo=UTC)
    assert verify_signed_media_url(form["media_url"], SECRET, now) == "whatsapp:wamid-photo-1"

    stored = await store.get(case.reference)
    assert stored is not None
    assert stored.open311.service_request_id == "638344"
    assert stored.open311.last_error is None
    assert stored.open311.forwarded_at == clock.now()
    assert stored.history[-1].kind is ChangeKind.FORWARDED

    again = await forward(case.reference, store, open311, mataro_config, clock)
    assert again.ok
    assert len(server.posts) == 1  # a forwarded case is not sent twice


async def test_a_500_answer_is_retried_with_backoff(
    open311, server, store, clock, mataro_config
) -> None:
    case = await new_case(store, clock)
    server.failures = [(500, {}), (503, {})]
    sleeps = Sleeps()
    result = await forward(case.reference, store, open311, mataro_config, clock, sleeps)
    assert result.ok
    assert result.attempts == 3
    assert sleeps.delays == [1.0, 2.0]
    assert len(server.posts) == 3
    stored = await store.get(case.reference)
    assert stored is not None
    assert stored.open311.service_request_id == "638344"
    assert stored.open311.attempts == 3


async def test_5xx_that_outlasts_the_retries_is_recorded_as_retryable(
    open311, server, store, clock, mataro_config
) -> None:
    case = await new_case(store, clock)
    server.failures = [(502, {}), (500, {}), (500, {})]
    result = await forward(case.reference, store, open311, mataro_config, clock)
    assert not result.ok
    assert result.retryable
    assert isinstance(result.error, Open311TransientError)
    assert result.case.open311.last_error is not None
    assert result.case.open311.last_error.startswith("Open311 (500)")
    assert result.case.history[-1].kind is ChangeKind.FORWARD_FAILED

    retried = await forward(
        case.reference, store, open311, mataro_config, clock
    )  # the outbox, later
    assert retried.ok
    assert retried.case.open311.attempts == 4
    assert retried.case.open311.last_error is None


async def test_429_waits_as_long_as_the_server_asks(
    open311, server, store, clock, mataro_config
) -> None:
    case = await new_case(store, clock)
    server.failures = [(429, {"Retry-After": "7"})]
    sleeps = Sleeps()
    result = await forward(case.reference, store, open311, mataro_config, clock, sleeps)
    assert result.ok
    assert sleeps.delays == [7.0]


async def test_a_400_answer_is_shown_to_the_operator_and_not_retried(
    open311, server, store, clock, mataro_config
) -> None:
    server.codes.discard("MTR-PAR")
    case = await new_case(store, clock, category="parcs")
    sleeps = Sleeps()
    result = await forward(case.reference, store, open311, mataro_config, clock, sleeps)
    assert not result.ok
    assert not result.retryable
    assert isinstance(result.error, Open311RejectedError)
    assert result.error.status_code == 400
    assert result.error.provider_code == 400
    assert result.error.description == "Service code MTR-PAR is not a valid service code."
    assert len(server.posts) == 1
    assert sleeps.delays == []
    stored = await store.get(case.reference)
    assert stored is not None
    assert stored.open311.last_error == (
        "Open311 (400): Service code MTR-PAR is not a valid service code."
    )
    assert stored.history[-1].note == stored.open311.last_error


async def test_a_wrong_api_key_shows_the_servers_words(http, store, clock, mataro_config) -> None:
    client = Open311Client(http, BASE, api_key="wrong")
    case = await new_case(store, clock)
    result = await forward(case.reference, store, client, mataro_config, clock)
    assert isinstance(result.error, Open311RejectedError)
    assert result.error.status_code == 403
    assert "Invalid api_key received" in (result.case.open311.last_error or "")


async def test_token_exchange_then_status_polling(
    open311, server, store, clock, mataro_config
) -> None:
    server.use_tokens = True
    case = await new_case(store, clock)
    result = await forward(case.reference, store, open311, mataro_config, clock)
    assert result.ok
    assert result.case.open311.token == "tok638344"
    assert result.case.open311.service_request_id is None

    async def poll() -> Case | None:
        return await poll_case(
            case.reference, store=store, upkeep=store, client=open311, clock=clock
        )

    assert await poll() is None  # not processed yet
    assert await open311.token_to_id("tok638344") is None

    server.process_tokens()
    assert await open311.token_to_id("tok638344") == "638344"
    assert await poll() is None  # now known, still "open"
    stored = await store.get(case.reference)
    assert stored is not None
    assert stored.open311.service_request_id == "638344"

    server.statuses["638344"] = {"status": "open", "status_notes": "Brigada assignada"}
    changed = await poll()
    assert changed is not None
    assert changed.status is CaseStatus.IN_PROGRESS
    assert changed.history[-1].note == "Brigada assignada"
    assert changed.history[-1].actor == "open311"

    server.statuses["638344"] = {"status": "closed", "status_notes": "Bombeta substituïda"}
    clock.advance(timedelta(days=2))
    changed = await poll()
    assert changed is not None
    assert changed.status is CaseStatus.RESOLVED
    assert await poll() is None  # nothing new


async def test_status_reads_the_specification_example(open311, server) -> None:
    server.statuses["638344"] = {"status": "closed", "status_notes": "Duplicate request."}
    remote = await open311.status("638344")
    assert remote.remote_status == "closed"
    assert remote.status is CaseStatus.REJECTED
    assert remote.status_notes == "Duplicate request."
    assert remote.updated_at == datetime(2010, 4, 14, 14, 37, 38, tzinfo=UTC)


async def test_an_unknown_request_is_a_rejection(open311) -> None:
    with pytest.raises(Open311RejectedError) as caught:
        await open311.status("1")
    assert caught.value.status_code == 404
    assert caught.value.description == "service request 1 not found"


@pytest.mark.parametrize(
    ("status", "notes", "expected"),
    [
        ("open", None, CaseStatus.RECEIVED),
        ("open", "Revisat per la brigada", CaseStatus.IN_PROGRESS),
        ("in_progress", None, CaseStatus.IN_PROGRESS),
        ("closed", None, CaseStatus.RESOLVED),
        ("closed", "Arreglat", CaseStatus.RESOLVED),
        ("closed", "Duplicate request.", CaseStatus.REJECTED),
        ("closed", "Sol·licitud rebutjada: és via privada", CaseStatus.REJECTED),
        ("CLOSED", "Incidencia duplicada", CaseStatus.REJECTED),
        ("fixed", None, CaseStatus.RESOLVED),
        ("not_councils_responsibility", None, CaseStatus.REJECTED),
        ("whatever", None, CaseStatus.RECEIVED),
    ],
)
def test_remote_status_mapping(status: str, notes: str | None, expected: CaseStatus) -> None:
    assert map_remote_status(status, notes) is expected


async def test_timeouts_are_transient() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(timeout)) as http:
        client = Open311Client(http, BASE, api_key=API_KEY)
        with pytest.raises(Open311TransientError, match="timed out"):
            await client.services()


async def test_an_answer_that_is_not_json_is_an_error() -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, text="<html>maintenance</html>")
        )
    ) as http:
        client = Open311Client(http, BASE, api_key=API_KEY)
        with pytest.raises(Open311Error, match="without JSON") as caught:
            await client.services()
        assert not caught.value.retryable


async def test_long_descriptions_are_cut_to_4000_characters(
    open311, server, store, clock, mataro_config
) -> None:
    case = await new_case(store, clock, description="x" * 5000)
    result = await forward(case.reference, store, open311, mataro_config, clock)
    assert result.ok
    assert len(server.posts[0]["description"]) == 4000


async def test_a_typed_address_goes_as_address_string(
    open311, server, store, clock, mataro_config
) -> None:
    location = CaseLocation(address="Carrer de Sant Josep, 12", source="typed")
    case = await new_case(store, clock, location=location)
    assert (await forward(case.reference, store, open311, mataro_config, clock)).ok
    form = server.posts[0]
    assert form["address_string"] == "Carrer de Sant Josep, 12"
    assert "lat" not in form


async def test_a_case_without_location_is_not_sent(
    open311, server, store, clock, mataro_config
) -> None:
    case = await new_case(store, clock, location=CaseLocation(source="typed"))
    result = await forward(case.reference, store, open311, mataro_config, clock)
    assert isinstance(result.error, Open311RejectedError)
    assert server.posts == []
    assert "no location" in (result.case.open311.last_error or "")


def test_client_options_are_validated(http) -> None:
    with pytest.raises(ConfigError, match="http"):
        Open311Client(http, "open311.mataro.test", api_key=API_KEY)
    with pytest.raises(ConfigError, match="api_key"):
        Open311Client(http, BASE, api_key="")


def test_signed_media_links() -> None:
    expires = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    before = expires - timedelta(seconds=1)
    url = signed_media_url("https://civic.mataro.test/", "whatsapp:wamid/1 2", SECRET, expires)
    assert url.startswith("https://civic.mataro.test/media/whatsapp%3Awamid%2F1%202?expires=")
    assert verify_signed_media_url(url, SECRET, before) == "whatsapp:wamid/1 2"
    assert verify_signed_media_url(url, SECRET, expires) is None  # expired
    assert verify_signed_media_url(url, "another-secret-of-some-length", before) is None
    assert verify_signed_media_url(url.replace("wamid", "wamix"), SECRET, before) is None
    assert (
        verify_signed_media_url(url[:-1] + ("0" if url[-1] != "0" else "1"), SECRET, before) is None
    )
    assert verify_signed_media_url("https://civic.mataro.test/other", SECRET, before) is None
    stamp = url.split("expires=")[1].split("&")[0]
    signature = url.split("signature=")[1]
    assert verify_media_signature("whatsapp:wamid/1 2", stamp, signature, SECRET, before)
    assert not verify_media_signature("whatsapp:wamid/1 2", "soon", signature, SECRET, before)
    assert not verify_media_signature("whatsapp:wamid/1 2", stamp, "é", SECRET, before)
    with pytest.raises(ConfigError, match="16 bytes"):
        signed_media_url("https://x", "r", "short", expires)


def mock_client(answer: Any, status: int = 200) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(status, json=answer)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "answer",
    [{"error": "?"}, [], ["a string"], [{"service_notice": "no id, no token"}], 42],
)
async def test_malformed_submit_answers_are_errors_not_crashes(answer: Any, store, clock) -> None:
    case = await new_case(store, clock)
    async with mock_client(answer) as http:
        client = Open311Client(http, BASE, api_key=API_KEY)
        with pytest.raises(Open311Error) as caught:
            await client.submit(case, "MTR-ENL")
        assert not caught.value.retryable


async def test_answers_wrapped_in_service_requests_are_read(store, clock) -> None:
    case = await new_case(store, clock)
    wrapped = {"service_requests": [{"service_request_id": 7, "token": None}]}
    async with mock_client(wrapped) as http:
        result = await Open311Client(http, BASE, api_key=API_KEY).submit(case, "MTR-ENL")
    assert result.service_request_id == "7"
    assert result.token is None


async def test_odd_service_lists() -> None:
    async with mock_client({"not": "a list"}) as http:
        with pytest.raises(Open311Error, match="expected a list"):
            await Open311Client(http, BASE, api_key=API_KEY).services()
    async with mock_client([{"service_name": "no code"}, "junk", {"service_code": 5}]) as http:
        services = await Open311Client(http, BASE, api_key=API_KEY).services()
    assert [s.service_code for s in services] == ["5"]


async def test_network_errors_are_transient_and_unknown_tokens_are_none() -> None:
    async with mock_client(httpx.ConnectError("refused")) as http:
        with pytest.raises(Open311TransientError, match="failed"):
            await Open311Client(http, BASE, api_key=API_KEY).services()
    async with mock_client([{"code": 404, "description": "no such token"}], status=404) as http:
        assert await Open311Client(http, BASE, api_key=API_KEY).token_to_id("t1") is None


@pytest.mark.parametrize("updated", ["2010-04-14T06:37:38", "yesterday", None])
async def test_status_times_without_offset_are_ignored(updated: Any) -> None:
    answer = [{"service_request_id": 1, "status": "open", "updated_datetime": updated}]
    async with mock_client(answer) as http:
        remote = await Open311Client(http, BASE, api_key=API_KEY).status("1")
    assert remote.updated_at is None
    assert remote.status is CaseStatus.RECEIVED


def test_retry_policy_validation_and_delays() -> None:
    with pytest.raises(ConfigError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError, match="factor"):
        RetryPolicy(factor=0.5)
    policy = RetryPolicy(base_delay=1, factor=3, max_delay=5)
    assert [policy.delay(n) for n in range(4)] == [1, 3, 5, 5]
    assert policy.delay(0, retry_after=100) == 5


async def test_with_retries_reports_each_retry() -> None:
    calls: list[int] = []
    seen: list[tuple[int, int | None]] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Open311TransientError("down", status_code=503)
        return "ok"

    result = await with_retries(
        flaky,
        RetryPolicy(attempts=3, base_delay=0),
        sleep=Sleeps(),
        on_retry=lambda n, exc: seen.append((n, exc.status_code)),
    )
    assert result == ("ok", 3)
    assert seen == [(1, 503), (2, 503)]


async def test_forwarding_problems_that_are_ours(
    open311, server, store, clock, mataro_config
) -> None:
    from civicchat.cases.errors import CaseNotFoundError

    with pytest.raises(CaseNotFoundError):
        await forward("MTR-2026-000404", store, open311, mataro_config, clock)
    with pytest.raises(CaseNotFoundError):
        await poll_case("MTR-2026-000404", store=store, upkeep=store, client=open311, clock=clock)
    case = await new_case(store, clock, category="no-such-category")
    result = await forward(case.reference, store, open311, mataro_config, clock)
    assert isinstance(result.error, Open311RejectedError)
    assert result.attempts == 0
    assert server.posts == []
    assert "no Open311 service_code" in (result.case.open311.last_error or "")
    assert (
        await poll_case(case.reference, store=store, upkeep=store, client=open311, clock=clock)
        is None
    )


async def test_a_case_closed_here_is_not_reopened_by_the_back_office(
    open311, server, store, clock, mataro_config
) -> None:
    case = await new_case(store, clock)
    await forward(case.reference, store, open311, mataro_config, clock)
    await store.update_status(
        case.reference, CaseStatus.RESOLVED, note="", actor="op", at=clock.now()
    )
    server.statuses["638344"] = {"status": "open", "status_notes": "Pendent"}
    assert (
        await poll_case(case.reference, store=store, upkeep=store, client=open311, clock=clock)
        is None
    )
    stored = await store.get(case.reference)
    assert stored is not None
    assert stored.status is CaseStatus.RESOLVED


def test_signed_links_need_aware_expiry() -> None:
    with pytest.raises(ValueError, match="zone-aware"):
        signed_media_url("https://x", "r", SECRET, datetime(2026, 1, 1))
