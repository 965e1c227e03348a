"""Behind a reverse proxy the web chat's per-address limit counts the citizen's address
(X-Forwarded-For), believed only from the proxies listed in ``server.forwarded_allow_ips``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from service_fakes import write_config

from service_process import serve_process

pytestmark = pytest.mark.slow

CITIZEN_A, CITIZEN_B = "203.0.113.10", "203.0.113.20"


def _post(base: str, n: int, forwarded_for: str) -> int:
    return httpx.post(
        f"{base}/webhooks/webchat/mataro-web",
        json={"visitor": f"visitor_{forwarded_for.replace('.', '')}000000", "id": f"m{n}",
              "text": "hola"},
        headers={"x-forwarded-for": forwarded_for},
        timeout=10,
    ).status_code  # fmt: skip


def _codes(tmp_path: Path, server: str) -> tuple[list[int], int]:
    """Three messages from citizen A, then one from citizen B, through a proxy at 127.0.0.1."""
    config = write_config(
        tmp_path, provider_base="http://127.0.0.1:9", extra=f"server: {{{server}}}"
    )
    with serve_process(config, tmp_path) as service:
        a = [_post(service.base, n, CITIZEN_A) for n in range(3)]
        return a, _post(service.base, 3, CITIZEN_B)


def test_a_local_proxy_is_believed_each_citizen_has_their_own_limit(tmp_path: Path):
    a, b = _codes(tmp_path, "webchat_messages_per_minute: 2")  # default: 127.0.0.1
    assert a == [200, 200, 429]
    assert b == 200  # another citizen behind the same proxy


def test_an_address_not_listed_is_not_believed_everyone_behind_it_shares_one_limit(
    tmp_path: Path,
):
    a, b = _codes(tmp_path, "webchat_messages_per_minute: 2, forwarded_allow_ips: ['192.0.2.1']")
    assert a == [200, 200, 429]
    assert b == 429  # the header is ignored: the proxy's own address is counted
