"""Privacy requests reach the cases a citizen reported: export includes them, erasure anonymises."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from civicchat.cases.models import NewCase
from civicchat.cases.sql import SqlCaseStore
from civicchat.cli import main
from civicchat.storage.engine import create_engine

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _draft(citizen: str, *, channel: str = "whatsapp", account: str = "mataro-wa") -> NewCase:
    return NewCase(
        category="enllumenat",
        description=f"Fanal apagat, em dic {citizen}",
        channel=channel,
        account=account,
        citizen_id=citizen,
    )


async def _report(url: str, *drafts: NewCase) -> list[str]:
    engine = create_engine(url)
    try:
        store = SqlCaseStore(engine)
        return [(await store.create(d, prefix="MTR", at=T0, actor="bot")).reference for d in drafts]
    finally:
        await engine.dispose()


async def _cases(url: str, channel: str, account: str, citizen: str) -> list[str]:
    engine = create_engine(url)
    try:
        found = await SqlCaseStore(engine).citizen_cases(channel, account, citizen)
        return [case.reference for case in found]
    finally:
        await engine.dispose()


def test_export_includes_and_erasure_anonymises_only_that_citizens_cases(tmp_path, capsys):
    url = f"sqlite+aiosqlite:///{tmp_path}/civic.db"
    assert main(["db", "upgrade", "--url", url]) == 0
    mine, other, elsewhere = asyncio.run(
        _report(
            url,
            _draft("34600000001"),
            _draft("34600000002"),
            _draft("34600000001", channel="telegram", account="mataro-tg"),
        )
    )
    who = ["--url", url, "--channel", "whatsapp", "--account", "mataro-wa"]

    out = tmp_path / "export.json"
    assert main(["privacy", "export", *who, "--citizen", "34600000001", "-o", str(out)]) == 0
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert [case["reference"] for case in exported["cases"]] == [mine]
    assert "em dic 34600000001" in exported["cases"][0]["description"]

    assert main(["privacy", "erase", *who, "--citizen", "34600000001", "--yes"]) == 0
    assert "1 case(s) anonymised" in capsys.readouterr().out
    assert asyncio.run(_cases(url, "whatsapp", "mataro-wa", "34600000001")) == []
    # The other citizen, and the same person on another account, are untouched.
    assert asyncio.run(_cases(url, "whatsapp", "mataro-wa", "34600000002")) == [other]
    assert asyncio.run(_cases(url, "telegram", "mataro-tg", "34600000001")) == [elsewhere]

    # The anonymised case is still there as a public record, without the citizen.
    async def read(reference: str) -> tuple[str | None, str]:
        engine = create_engine(url)
        try:
            case = await SqlCaseStore(engine).get(reference)
            assert case is not None
            return case.citizen_id, case.description
        finally:
            await engine.dispose()

    citizen, description = asyncio.run(read(mine))
    assert citizen is None
    assert "34600000001" not in description
