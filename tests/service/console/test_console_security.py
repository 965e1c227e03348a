"""Security review of the console: redirects, links in messages, identifiers."""

from __future__ import annotations

import re

import pytest
from console_helpers import World, login_as

from civicchat.messages import Media, MediaKind, OutboundMessage, Text
from civicchat.service.console.web import safe_next


@pytest.mark.parametrize("target", ["/console\n", "/console/conversations/7\n", "/\n"])
def test_a_return_path_with_a_final_newline_is_refused(target: str) -> None:
    # "$" in a pattern matches before a final newline; the check must look at the whole value.
    assert safe_next(target) == "/console"


async def _sent(world: World, conv_id: int, recipient: str, link: str) -> None:
    async with world.store.transaction() as tx:
        await tx.enqueue(
            [
                OutboundMessage(
                    channel="whatsapp",
                    account="wa-a",
                    recipient_id=recipient,
                    content=Media(media_kind=MediaKind.DOCUMENT, link=link, filename="x.pdf"),
                )
            ],
            key_prefix=f"test:{link}",
            conversation_id=conv_id,
        )


@pytest.mark.parametrize(
    "link",
    ["javascript:alert(document.cookie)", "data:text/html,<script>alert(1)</script>", "//evil"],
)
async def test_a_sent_document_link_that_is_not_http_is_never_an_href(
    world: World, link: str
) -> None:
    conv = await world.conversation("wa-a", content=Text(body="hola"))
    await _sent(world, conv.id, conv.recipient_id, link)
    await _sent(world, conv.id, conv.recipient_id, "https://example.org/ok.pdf")
    async with world.client() as client:
        await login_as(client, "op_a")
        page = (await client.get(f"/console/conversations/{conv.id}")).text
    hrefs = re.findall(r'(?:href|src)="([^"]*)"', page)
    assert "https://example.org/ok.pdf" in hrefs  # the check sees the links the page shows
    assert not [h for h in hrefs if h.startswith(("javascript:", "data:", "//"))]
    assert "javascript:" not in page
