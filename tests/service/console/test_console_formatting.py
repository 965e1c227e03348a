"""Message text in the console: WhatsApp's styles and clickable links, escaped and safe."""

from __future__ import annotations

import re
import time

import pytest
from console_helpers import World, form_token, login_as

from civicchat.messages import Text
from civicchat.service.console.formatting import whatsapp_html

_REL = 'rel="noopener noreferrer nofollow" target="_blank"'


def _link(url: str) -> str:
    return f'<a href="{url}" {_REL}>{url}</a>'


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("*Horari*", "<strong>Horari</strong>"),
        ("_ara_ i ~abans~", "<em>ara</em> i <s>abans</s>"),
        ("```codi *no*```", "<code>codi *no*</code>"),
        ("bus_interurba i 2*3*4", "bus_interurba i 2*3*4"),  # inside words: as written
        ("* no * i *\nno*", "* no * i *\nno*"),  # a space inside the stars, or a line break
        ("*negreta _i cursiva_*", "<strong>negreta <em>i cursiva</em></strong>"),
        ("https://www.mataro.cat/010", _link("https://www.mataro.cat/010")),
        ("(https://x.cat/a_(b)).", "(" + _link("https://x.cat/a_(b)") + ")."),
        ("mira https://x.cat/a?b=1&c=2.", "mira " + _link("https://x.cat/a?b=1&amp;c=2") + "."),
        ("*https://x.cat/a_b*", "<strong>" + _link("https://x.cat/a_b") + "</strong>"),
    ],
)
def test_whatsapp_styles_and_links(text: str, html: str) -> None:
    assert str(whatsapp_html(text)) == html


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '"onmouseover=alert(1) x="',
        'https://x.cat/"onmouseover="alert(1)',
        "https://x.cat/'><img src=x onerror=alert(1)>",
        "javascript:alert(1) JAVASCRIPT://x data:text/html,<b>x</b> vbscript:x",
        "*<b>bold</b>* _<i>x</i>_ ```<script>x</script>```",
        "https://x.cat/\x00<script>",
    ],
)
def test_hostile_text_never_becomes_markup(hostile: str) -> None:
    html = str(whatsapp_html(hostile))
    tags = re.findall(r"<[^>]*>", html)
    allowed = re.compile(
        rf'^(</?(strong|em|s|code|a)>|<a href="https?://[^"\s<>]*" {re.escape(_REL)}>)$'
    )
    assert all(allowed.match(tag) for tag in tags), tags
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith(("http://", "https://"))
        assert "'" not in href
    assert "<script" not in html
    assert "onmouseover=" not in html.replace("&#34;onmouseover=", "")


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000,
        "*a " * 70_000,
        "_" * 200_000,
        "https://" + "a" * 200_000,
        "```" + "a `" * 60_000,
        ("*_~https://x.cat/ " * 15_000),
    ],
)
def test_a_very_long_text_takes_bounded_time(text: str) -> None:
    started = time.perf_counter()
    html = whatsapp_html(text)
    assert time.perf_counter() - started < 1.0
    assert len(html) >= len(text) // 2


async def test_the_conversation_shows_styles_and_links_safely(world: World) -> None:
    body = "*Hola* mira https://www.mataro.cat/010 <script>alert(1)</script>"
    conv = await world.conversation("wa-a", content=Text(body=body))
    async with world.client() as client:
        await login_as(client, "op_a")
        page = await client.get(f"/console/conversations/{conv.id}")
        partial = await client.get(f"/console/conversations/{conv.id}/messages")
    for html in (page.text, partial.text):
        assert "<strong>Hola</strong>" in html
        assert _link("https://www.mataro.cat/010") in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert(1)" not in html


async def test_the_keyword_preview_shows_bold_not_stars(world: World) -> None:
    url = "/admin/accounts/wa-a/keywords/cita_previa"
    async with world.client() as client:
        await login_as(client, "admin_a")
        page = await client.get(url)
        data = {
            "csrf_token": form_token(page.text),
            "version": re.search(r'name="version" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
            "aliases_ca": "cita prèvia",
            "aliases_es": "cita previa",
            "reply_ca": "*Cita prèvia*: https://www.mataro.cat/ca/cita-previa",
            "reply_es": "_Cita previa_ <b>",
            "action": "preview",
        }
        preview = await client.post(url, data=data)
    assert preview.status_code == 200
    shown = preview.text[preview.text.index('class="preview"') :]
    assert (
        "<strong>Cita prèvia</strong>: " + _link("https://www.mataro.cat/ca/cita-previa") in shown
    )
    assert "<em>Cita previa</em> &lt;b&gt;" in shown
