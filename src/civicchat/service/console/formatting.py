"""Message text as WhatsApp shows it: ``*bold*``, ``_italic_``, ``~strike~``, ```` ```mono``` ````
and clickable http(s) links, as safe HTML.

The text is escaped first; links and styles are found in the escaped text, so nothing the citizen
wrote can become markup, an attribute or another scheme than ``http``/``https``::

    >>> str(whatsapp_html("*Horari*: https://www.mataro.cat/010 <b>"))
    '<strong>Horari</strong>: <a href="https://www.mataro.cat/010" rel="noopener noreferrer nofollow" target="_blank">https://www.mataro.cat/010</a> &lt;b&gt;'

Every pattern is linear in the length of the text (no nested repetition).
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

__all__ = ["whatsapp_html"]

# Over the escaped text: an escaped quote (&#34; &#39;) or bracket ends a link; &amp; does not.
_URL = re.compile(r"\bhttps?://(?:[^\s&<>\x00]|&amp;)+", re.IGNORECASE)
_TRAILING = ".,;:!?*_~"
_MONO = re.compile(r"```([^`\x00]+?)```")
_STYLES = (
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), "strong"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), "em"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), "s"),
)
_SLOT = re.compile(r"\x00(\d+)\x00")
_LINK = '<a href="{0}" rel="noopener noreferrer nofollow" target="_blank">{0}</a>'


def whatsapp_html(text: str | None) -> Markup:
    """``text`` as HTML: escaped, WhatsApp's styles as tags, http(s) addresses as links."""
    if not text:
        return Markup("")
    slots: list[str] = []

    def keep(html: str) -> str:
        slots.append(html)
        return f"\x00{len(slots) - 1}\x00"

    def link(match: re.Match[str]) -> str:
        url = match.group(0)
        tail = ""
        while url and (
            url[-1] in _TRAILING or (url[-1] == ")" and url.count(")") > url.count("("))
        ):
            url, tail = url[:-1], url[-1] + tail
        if url.endswith("&amp"):  # an "&amp;" cut by the loop above: give its ";" back
            url, tail = url + ";", tail[1:]
        return keep(_LINK.format(url)) + tail

    html = str(escape(text.replace("\x00", "")))
    html = _MONO.sub(lambda m: keep(f"<code>{m.group(1)}</code>"), html)
    html = _URL.sub(link, html)
    for pattern, tag in _STYLES:
        html = pattern.sub(rf"<{tag}>\1</{tag}>", html)
    return Markup(_SLOT.sub(lambda m: slots[int(m.group(1))], html))
