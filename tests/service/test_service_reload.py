"""Office hours edited in the console reach the routing pipeline (civicchat.service.reload)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from service_fakes import running, start_service, wait_for

from civicchat.service.config import ServiceConfig
from civicchat.service.live import LiveEvent
from civicchat.service.reload import OFFICE_HOURS, on_office_hours_changed

SATURDAY_10 = datetime(2026, 11, 28, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))


def _hours_event(account: str) -> LiveEvent:
    return LiveEvent(account=account, kind="catalog_changed", data={"what": OFFICE_HOURS})


def _own_hours_file(config: ServiceConfig, tmp_path: Path) -> tuple[ServiceConfig, Path]:
    """The configuration with mataro-web reading a copy of the hours (never the example's file)."""
    (acfg,) = [a for a in config.accounts if a.name == "mataro-web"]
    copy = tmp_path / "hours-web.yaml"
    copy.write_text(acfg.office_hours.read_text(encoding="utf-8"), encoding="utf-8")
    accounts = tuple(
        a.model_copy(update={"office_hours": copy}) if a.name == "mataro-web" else a
        for a in config.accounts
    )
    return config.model_copy(update={"accounts": accounts}), copy


async def test_an_office_hours_event_reloads_the_accounts_pipeline(tmp_path: Path) -> None:
    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat
    account = state.accounts["mataro-web"]
    config, hours_file = _own_hours_file(state.config, tmp_path)
    pipeline = account.pipeline
    assert pipeline.office_hours.is_open(MONDAY_10)
    assert not pipeline.office_hours.is_open(SATURDAY_10)
    hours_file.write_text(
        "timezone: Europe/Madrid\nweekly:\n  saturday: ['09:00-13:00']\n", encoding="utf-8"
    )
    assert on_office_hours_changed(_hours_event("mataro-web"), account, config)
    assert pipeline.office_hours.is_open(SATURDAY_10)
    assert not pipeline.office_hours.is_open(MONDAY_10)
    # Another account's pipeline is not touched by this account's event.
    assert state.accounts["mataro-wa"].pipeline.office_hours.is_open(MONDAY_10)
    await provider.aclose()


async def test_a_broken_hours_file_keeps_the_hours_in_force(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat
    account = state.accounts["mataro-web"]
    config, hours_file = _own_hours_file(state.config, tmp_path)
    before = account.pipeline.office_hours
    hours_file.write_text("timezone: Nowhere/Atlantis\nweekly: {}\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="civicchat.service"):
        assert on_office_hours_changed(_hours_event("mataro-web"), account, config)
    assert account.pipeline.office_hours is before
    assert "office hours of mataro-web not reloaded" in caplog.text
    await provider.aclose()


async def test_other_events_are_left_to_the_runtime(tmp_path: Path) -> None:
    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat
    account = state.accounts["mataro-web"]
    before = account.pipeline.office_hours
    for event in [
        LiveEvent(account="mataro-web", kind="catalog_changed", data={"what": "catalog"}),
        LiveEvent(account="mataro-web", kind="catalog_changed"),
        LiveEvent(account="mataro-web", kind="message_in", data={"what": OFFICE_HOURS}),
    ]:
        assert not on_office_hours_changed(event, account, state.config)
    assert account.pipeline.office_hours is before
    await provider.aclose()


async def test_the_running_service_puts_edited_hours_in_force(tmp_path: Path) -> None:
    # What the admin page does (write the file, publish on the live bus) reaches the pipeline
    # of every process through the runtime's live listener.
    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat
    pipeline = state.accounts["mataro-web"].pipeline
    config, hours_file = _own_hours_file(state.config, tmp_path)
    state.runtime.config = config
    async with running(app):
        assert not pipeline.office_hours.is_open(SATURDAY_10)
        hours_file.write_text(
            "timezone: Europe/Madrid\nweekly:\n  saturday: ['09:00-13:00']\n", encoding="utf-8"
        )
        await state.live.publish(_hours_event("mataro-web"))
        await wait_for(lambda: pipeline.office_hours.is_open(SATURDAY_10))
    assert not pipeline.office_hours.is_open(MONDAY_10)
    await provider.aclose()
