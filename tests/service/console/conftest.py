"""The ``world`` fixture: see console_helpers."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from console_helpers import MATARO, PASSWORD, SECRET, START, MemoryBlobs, World
from starlette.applications import Starlette

from civicchat.clock import ManualClock
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.routing import load_office_hours
from civicchat.service.console import (
    ConsoleAccount,
    ConsoleContext,
    build_console_routes,
    load_canned_responses,
)
from civicchat.service.live import InProcessLiveBus
from civicchat.storage.base import Operator, OperatorRole
from civicchat.storage.engine import create_engine, upgrade
from civicchat.storage.sql import SqlStore

_TEMPLATE: dict[str, Path] = {}
_PARSED: dict[str, Any] = {}


@pytest.fixture
async def world(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    clock = ManualClock(START)
    if "db" not in _TEMPLATE:  # migrate once, copy the empty database for every test
        template = tmp_path_factory.mktemp("console-template") / "empty.db"
        migrating = create_engine(str(template))
        await upgrade(migrating)
        await migrating.dispose()
        _TEMPLATE["db"] = template
    shutil.copy(_TEMPLATE["db"], tmp_path / "console.db")
    engine = create_engine(str(tmp_path / "console.db"))
    store = SqlStore(engine, clock=clock)
    catalog_path = tmp_path / "catalog.yaml"
    hours_path = tmp_path / "hours.yaml"
    shutil.copy(MATARO / "catalog.yaml", catalog_path)
    shutil.copy(MATARO / "hours.yaml", hours_path)
    if "catalog" not in _PARSED:  # parsed once: the values are immutable
        _PARSED["catalog"] = load_catalog(catalog_path)
        _PARSED["hours"] = load_office_hours(hours_path)
        _PARSED["canned"] = load_canned_responses(MATARO / "canned_responses.yaml")
    engine_kw = KeywordEngine(_PARSED["catalog"], clock=clock)
    hours = _PARSED["hours"]
    canned = _PARSED["canned"]
    accounts = {
        "wa-a": ConsoleAccount(
            "wa-a",
            "whatsapp",
            "WhatsApp 010",
            engine=engine_kw,
            catalog_path=catalog_path,
            office_hours=hours,
            hours_path=hours_path,
            canned=canned,
            group="city-a",
            address="+34 600 000 010",
            templates={"reengagement": "mataro010_reprendre"},
        ),
        "web-a": ConsoleAccount(
            "web-a",
            "webchat",
            "Web 010",
            engine=engine_kw,
            catalog_path=catalog_path,
            office_hours=hours,
            hours_path=hours_path,
            canned=canned,
            group="city-a",
        ),
        "tg-b": ConsoleAccount("tg-b", "telegram", "Telegram B", group="city-b"),
    }
    live = InProcessLiveBus()
    blobs = MemoryBlobs()
    ctx = ConsoleContext(
        store=store,
        accounts=accounts,
        live=live,
        blobs=blobs,
        clock=clock,
        secret_key=SECRET,
        login_attempts=3,
        login_attempts_per_address=6,
    )
    app = Starlette(routes=build_console_routes(ctx))
    ops: dict[str, Operator] = {}
    # Cheap argon2 parameters for the fixtures' hashes: verifying them is fast.
    pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with store.transaction() as tx:
        for key, scope, role in (
            ("op_a", "city-a", OperatorRole.OPERATOR),
            ("op2_a", "city-a", OperatorRole.OPERATOR),
            ("sup_a", "city-a", OperatorRole.SUPERVISOR),
            ("admin_a", "city-a", OperatorRole.ADMIN),
            ("op_b", "city-b", OperatorRole.OPERATOR),
            ("admin_b", "city-b", OperatorRole.ADMIN),
        ):
            ops[key] = await tx.operators.add_operator(
                account=scope,
                name=key.replace("_", " ").title(),
                login=key,
                password_hash=pw,
                role=role,
            )
    try:
        yield World(store, clock, live, blobs, ctx, app, catalog_path, hours_path, ops)
    finally:
        await store.close()
