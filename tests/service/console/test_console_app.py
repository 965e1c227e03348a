"""The console as the service mounts it (``create_app``): what the service passes to it."""

from __future__ import annotations

from pathlib import Path

import httpx
from argon2 import PasswordHasher
from console_helpers import MATARO, PASSWORD, login_as

from civicchat.service.app import create_app
from civicchat.service.config import load_config
from civicchat.storage.base import OperatorRole


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database_url: "sqlite+aiosqlite:///{tmp_path / "service.db"}"
secret_key: "{"k" * 40}"
demo_operators: false
workers: {{enabled: false}}
media: {{directory: "{tmp_path / "media"}"}}
accounts:
  - name: mataro-web
    channel: webchat
    group: mataro
    catalog: {MATARO / "catalog.yaml"}
    office_hours: {MATARO / "hours.yaml"}
  - name: mataro-tg
    channel: telegram
    display_name: Telegram 010
    group: mataro
    catalog: {MATARO / "catalog.yaml"}
    office_hours: {MATARO / "hours.yaml"}
    telegram:
      bot_token: "${{CC_TEST_TG_TOKEN}}"
      secret_token: "${{CC_TEST_TG_SECRET}}"
""",
        encoding="utf-8",
    )
    return path


async def test_the_service_lists_its_disabled_accounts_on_the_accounts_page(
    tmp_path: Path,
) -> None:
    app = create_app(load_config(_config(tmp_path), env={}), announce=lambda _line: None)
    state = app.state.civicchat
    async with app.router.lifespan_context(app):
        hashed = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        async with state.store.transaction() as tx:
            await tx.operators.add_operator(
                account="mataro",
                name="Admin",
                login="admin",
                password_hash=hashed,
                role=OperatorRole.ADMIN,
            )
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            await login_as(client, "admin")
            page = await client.get("/admin/accounts")
    assert page.status_code == 200
    row = page.text[page.text.index('data-account="mataro-tg"') :]
    row = row[: row.index("</tr>")]
    assert "Telegram 010" in row
    assert "desactivat" in row
    assert "CC_TEST_TG_SECRET, CC_TEST_TG_TOKEN" in row
