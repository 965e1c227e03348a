"""Verify and parse a WhatsApp webhook, against a plain ``json.loads`` of the same bytes.

Run: ``.venv/bin/python benchmarks/channels.py``. Both sides run in the same process, one after
the other, several rounds; the best round of each is kept and the ratio printed (absolute
figures move ±30 % on shared machines, ratios far less).

Also prints the HMAC check alone, to show where the time goes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from civicchat.channels.base import WebhookRequest
from civicchat.channels.whatsapp import WhatsAppAccount, WhatsAppChannel, sign

ACCOUNT = WhatsAppAccount(
    name="mataro",
    phone_number_id="100000000000001",
    access_token="token",
    app_secret="app-secret",
    verify_token="verify",
)


def payload(count: int) -> bytes:
    messages = [
        {
            "from": f"346001{i:05d}",
            "id": f"wamid.HBgLMzQ2MDAxMTEyMjIVAgASGBQzQTAw{i:010d}",
            "timestamp": "1774620000",
            "type": "text",
            "text": {"body": f"Bon dia, voldria saber l'horari de la deixalleria ({i})"},
        }
        for i in range(count)
    ]
    contacts = [{"profile": {"name": f"Veí {i}"}, "wa_id": f"346001{i:05d}"} for i in range(count)]
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "300000000000001",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "34937000010",
                                "phone_number_id": ACCOUNT.phone_number_id,
                            },
                            "contacts": contacts,
                            "messages": messages,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body, ensure_ascii=False).encode()


def best_per_call(func: Callable[[], object], budget: float = 1.5, rounds: int = 5) -> float:
    """Best seconds per call over ``rounds`` rounds that together take about ``budget`` s."""
    calls = 1
    while True:  # calibrate: one round of about budget / rounds seconds
        start = time.perf_counter()
        for _ in range(calls):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= budget / rounds / 4:
            break
        calls *= 2
    calls = max(1, int(calls * (budget / rounds) / max(elapsed, 1e-9)))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            func()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    channel = WhatsAppChannel([ACCOUNT], client=httpx.AsyncClient())
    secret = ACCOUNT.app_secret.encode()
    print(f"{'messages':>8} {'json.loads':>12} {'hmac only':>12} {'civicchat':>12} {'ratio':>7}")
    for count in (1, 100):
        body = payload(count)
        request = WebhookRequest(
            method="POST",
            headers={"X-Hub-Signature-256": sign(body, ACCOUNT.app_secret)},
            body=body,
        )
        assert len(channel.handle_webhook(request).events) == count

        def baseline(body: bytes = body) -> object:
            return json.loads(body)

        def mac(body: bytes = body) -> object:
            return hmac.new(secret, body, hashlib.sha256).hexdigest()

        def ours(request: WebhookRequest = request) -> object:
            return channel.handle_webhook(request)

        plain = best_per_call(baseline)
        signing = best_per_call(mac)
        parsed = best_per_call(ours)
        print(
            f"{count:>8} {plain * 1e6:>10.1f}µs {signing * 1e6:>10.1f}µs "
            f"{parsed * 1e6:>10.1f}µs {parsed / plain:>6.1f}x"
        )
    print("ratio = civicchat verify+parse time / json.loads time of the same bytes")


if __name__ == "__main__":
    main()
