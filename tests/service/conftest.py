from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from service_fakes import Service, running, start_service


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    app, fake, provider, path = await start_service(tmp_path)
    async with running(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield Service(app, app.state.civicchat, client, fake, path)
    await provider.aclose()
