"""In a real browser: what a citizen sees in the web chat, and the console's top bar on a laptop."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import (
    Service,
    login,
    open_chat,
    phone,
    send,
    serve_live_events,
    tiny_png,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_keyword_list_is_bold_not_starred_and_the_language_switch_sticks(
    service: Service, browser: Any
) -> None:
    context = phone(browser)
    failed: list[str] = []
    chat = context.new_page()
    chat.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    chat.goto(f"{service.base}/chat/mataro-web")
    assert "PARAULES CLAU" in chat.inner_text(".note.hello")
    send(chat, "PARAULES CLAU")

    # WhatsApp's *bold* is shown bold, without the stars.
    title = chat.wait_for_selector(".msg.them strong", timeout=15_000)
    assert title.inner_text() == "Paraules clau"
    answers = chat.inner_text("#log")
    assert "*Paraules clau*" not in answers
    assert "*Mobilitat*" not in answers
    assert chat.locator(".msg.them strong", has_text="Mobilitat").count() == 1

    # Switching to Spanish translates the greeting too, and is remembered on the next visit.
    chat.click("#lang")
    assert "PALABRAS CLAVE" in chat.inner_text(".note.hello")
    assert chat.get_attribute("html", "lang") == "es"
    chat.goto(f"{service.base}/chat/mataro-web")
    assert chat.inner_text("#lang") == "Català"
    assert "PALABRAS CLAVE" in chat.inner_text(".note.hello")
    assert chat.get_attribute("#text", "placeholder") == "Escribe tu mensaje…"
    # No request of the page fails (not even the tab's icon).
    assert failed == []
    context.close()


def test_a_question_is_answered_once_its_buttons_then_stop(service: Service, browser: Any) -> None:
    context = phone(browser)
    chat = open_chat(context, service.base, "ca")
    send(chat, "horari de la deixalleria")
    question = chat.wait_for_selector(".msg.them:has-text('Volies dir') .buttons", timeout=15_000)
    buttons = question.query_selector_all("button")
    assert len(buttons) >= 2
    assert not any(b.is_disabled() for b in buttons)
    buttons[0].click()
    chat.wait_for_selector(".msg.them:has-text('deixalleria pots portar')", timeout=15_000)
    assert all(b.is_disabled() for b in buttons)
    assert buttons[0].get_attribute("class") == "chosen"
    answers = chat.locator(".msg.them:has-text('deixalleria pots portar')").count()
    buttons[1].click(force=True)  # a disabled button sends nothing
    chat.wait_for_timeout(500)
    assert chat.locator(".msg.me").count() == 2
    assert chat.locator(".msg.them:has-text('deixalleria pots portar')").count() == answers
    context.close()


def test_a_lost_live_connection_is_said_until_it_is_back(service: Service, browser: Any) -> None:
    context = phone(browser, "es-ES")
    context.route("**/events?*", lambda route: route.abort())
    chat = open_chat(context, service.base)
    note = chat.wait_for_selector(".note.offline", timeout=10_000)
    assert note.inner_text() == "Conexión perdida; reconectando…"
    context.unroute("**/events?*")
    chat.wait_for_selector(".note.offline", state="detached", timeout=15_000)
    context.close()


@pytest.mark.parametrize(
    ("locale", "offline"),
    [("ca-ES", "Connexió perduda; reconnectant…"), ("es-ES", "Conexión perdida; reconectando…")],
)
def test_a_refused_live_stream_is_tried_again_later(
    service: Service, browser: Any, locale: str, offline: str
) -> None:
    context = phone(browser, locale)
    streams: list[str] = []

    def first_refused(route: Any) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:  # as the service answers a page over its per-address limit
            route.fulfill(status=429, headers={"retry-after": "60"}, body="too many requests")
        else:
            route.continue_()

    context.route("**/events?*", first_refused)
    chat = open_chat(context, service.base)
    # A browser gives an EventSource up after a refusal: the page says so and tries again.
    note = chat.wait_for_selector(".note.offline", timeout=10_000)
    assert note.inner_text() == offline
    chat.wait_for_selector(".note.offline", state="detached", timeout=15_000)
    assert len(streams) == 2
    # The stream works again: an answer comes live.
    send(chat, "horari de la deixalleria")
    chat.wait_for_selector(".msg.them", timeout=15_000)
    context.close()


def test_console_top_bar_fits_one_line_of_a_laptop_in_spanish(
    service: Service, browser: Any
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 720}, locale="es-ES")
    page = context.new_page()
    login(page, service.base, "admin", service.passwords["admin"])
    for path in ("/console", "/admin"):
        page.goto(f"{service.base}/lang/es?next={path}")
        page.wait_for_selector("header.top .langs")
        bar = page.locator("header.top").bounding_box()
        langs = page.locator("header.top .langs").bounding_box()
        brand = page.locator("header.top .brand").bounding_box()
        assert bar is not None
        assert langs is not None
        assert brand is not None
        assert bar["height"] < 70, path  # one row of links, not two
        assert abs(langs["y"] - brand["y"]) < 20, path
        who = page.locator("header.top .who")
        assert "Administración" in (who.get_attribute("title") or "")
    context.close()


CAPTION = "Fanal trencat davant del número 12"
MATARO_POINT = {"latitude": 41.5381, "longitude": 2.4445}


def test_a_citizen_sends_a_photo_and_a_location_and_the_operator_sees_both(
    service: Service, browser: Any
) -> None:
    citizen = phone(browser, permissions=["geolocation"], geolocation=MATARO_POINT)
    chat = open_chat(citizen, service.base)
    assert chat.is_visible("#photo")
    # What is typed when the photo is chosen goes with it as its caption.
    chat.fill("#text", CAPTION)
    chat.set_input_files(
        "#photo-file", files=[{"name": "fanal.png", "mimeType": "image/png", "buffer": tiny_png()}]
    )
    chat.wait_for_selector(".msg.me img")
    chat.wait_for_selector(".note:has-text('Enviant la foto')", state="detached", timeout=15_000)
    assert chat.locator(".note.error").count() == 0
    assert chat.input_value("#text") == ""
    chat.click("#where")
    chat.wait_for_selector(".msg.me:has-text('La meva ubicació')", timeout=15_000)
    assert "mlat=41.5381&mlon=2.4445" in chat.inner_text(".msg.me:has-text('La meva ubicació')")
    assert chat.locator(".note.error").count() == 0
    visitor = chat.evaluate("localStorage.getItem('civicchat-visitor-mataro-web')")

    operator = browser.new_context(viewport={"width": 1366, "height": 800}, locale="ca-ES")
    console = operator.new_page()
    login(console, service.base, "operador", service.passwords["operador"])
    row = console.wait_for_selector(f"tr[data-conversation]:has-text('{visitor[-4:]}')")
    conversation_id = row.get_attribute("data-conversation")
    console.goto(f"{service.base}/console/conversations/{conversation_id}")
    # The photo is drawn (the media worker stored it; until then the console says it is coming).
    for _ in range(50):
        drawn = console.evaluate(
            "() => [...document.querySelectorAll('#messages img')]"
            ".some(i => i.complete && i.naturalWidth === 2)"
        )
        if drawn:
            break
        console.wait_for_timeout(300)
        console.reload()
    assert drawn
    messages = console.inner_text("#messages")
    assert CAPTION in messages
    assert "41.53810, 2.44450" in messages
    citizen.close()
    operator.close()


def test_photo_and_location_refusals_are_said_in_the_citizens_language(
    service: Service, browser: Any
) -> None:
    # No geolocation permission granted: the browser denies it.
    citizen = phone(browser, "es-ES")
    chat = open_chat(citizen, service.base)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    chat.fill("#text", "Farola apagada")
    chat.set_input_files(
        "#photo-file", files=[{"name": "IMG_0001.HEIC", "mimeType": "image/heic", "buffer": heic}]
    )
    error = chat.wait_for_selector(".note.error", timeout=15_000)
    assert "Las fotos HEIC del iPhone no se pueden ver aquí" in error.inner_text()
    assert chat.locator(".msg.me.failed").count() == 1
    assert chat.input_value("#text") == "Farola apagada"  # the caption is back, to try again
    chat.fill("#text", "")
    chat.set_input_files(
        "#photo-file",
        files=[{"name": "notes.pdf", "mimeType": "image/jpeg", "buffer": b"%PDF-1.7\n" * 10}],
    )
    chat.wait_for_selector(".note.error:has-text('Solo se pueden enviar fotos')", timeout=15_000)
    citizen.set_geolocation(None)
    chat.click("#where")
    chat.wait_for_selector(
        ".note.error:has-text('No tenemos permiso para saber tu ubicación')", timeout=15_000
    )
    assert chat.locator(".msg.me:has-text('Mi ubicación')").count() == 0
    citizen.close()


def test_the_title_switches_with_the_language(service: Service, browser: Any) -> None:
    context = phone(browser)
    titles = {"ca": "Xat de l'Ajuntament", "es": "Chat del Ayuntamiento"}

    def per_language(route: Any) -> None:
        # The test service has one title: serve the page as with display_name: {ca, es}.
        response = route.fetch()
        body = response.text().replace(
            '"titles": {', f'"titles": {json.dumps(titles)}, "unused": {{', 1
        )
        route.fulfill(response=response, body=body)

    context.route("**/chat/mataro-web?lang=ca", per_language)
    chat = open_chat(context, service.base, "ca")
    assert chat.inner_text("#title") == titles["ca"]
    assert chat.title() == titles["ca"]
    chat.click("#lang")
    assert chat.inner_text("#title") == titles["es"]
    assert chat.title() == titles["es"]
    context.close()


def test_a_document_above_the_buttons_is_a_download_link_apart_from_its_caption(
    service: Service, browser: Any
) -> None:
    context = phone(browser)
    chat = open_chat(context, service.base, "ca")
    send(chat, "bus urbà")
    bubble = chat.wait_for_selector(
        ".msg.them:has(.buttons):has-text('Mataró Bus')", timeout=15_000
    )
    link = bubble.query_selector("a.file[download]")
    assert link is not None
    assert link.query_selector(".name").inner_text() == "planol-xarxa-mataro-bus.pdf"
    assert link.query_selector(".icon[aria-hidden=true]").inner_text() == "📄"
    assert (link.get_attribute("href") or "").startswith("https://www.mataro.cat/")
    # The keyword engine sends the file's caption as the message's footer (WhatsApp shows a
    # header file without one): under the text, apart from the file name.
    assert bubble.query_selector(".header .caption") is None
    caption = bubble.query_selector(".footer")
    assert caption is not None
    assert caption.inner_text() == "Plànol de la xarxa de Mataró Bus"
    # The file name and the caption are on lines of their own, not run together.
    text = bubble.inner_text()
    assert "Mataró Busplanol" not in text
    assert "planol-xarxa-mataro-bus.pdfPlànol" not in text
    link_box, caption_box = link.bounding_box(), caption.bounding_box()
    assert link_box is not None
    assert caption_box is not None
    assert caption_box["y"] >= link_box["y"] + link_box["height"] - 1
    # The header comes first, then the text, then the buttons, all in one bubble.
    order = bubble.evaluate("b => [...b.children].map(n => n.className)")
    assert order == ["header", "body", "footer", "buttons"]
    assert "Línies, horaris i parades" in bubble.query_selector(".body").inner_text()
    assert bubble.query_selector_all(".buttons button")
    context.close()


def test_a_document_with_a_caption_alone_shows_both_apart(service: Service, browser: Any) -> None:
    context = phone(browser)
    # A document message as the live stream brings it (served here by the test).
    document = {
        "id": "doc-1",
        "content": {
            "kind": "media",
            "media_kind": "document",
            "link": "https://www.mataro.cat/planol.pdf",
            "caption": "Plànol de la xarxa",
            "filename": "planol.pdf",
        },
    }
    serve_live_events(context, [document])
    chat = open_chat(context, service.base, "ca")
    bubble = chat.wait_for_selector(".msg.them .media")
    assert bubble.query_selector("a.file .name").inner_text() == "planol.pdf"
    assert bubble.query_selector(".caption").inner_text() == "Plànol de la xarxa"
    assert "Plànol de la xarxaplanol" not in bubble.inner_text()
    chat.wait_for_timeout(300)
    assert chat.locator(".msg.them .media").count() == 1
    context.close()


@pytest.mark.parametrize(
    ("locale", "header", "body", "footer"),
    [
        ("ca-ES", "Deixalleria", "Què vols saber?", "Respon amb un botó o escriu «cancel·lar»."),
        (
            "es-ES",
            "Punto limpio",
            "¿Qué quieres saber?",
            "Responde con un botón o escribe «cancelar».",
        ),
    ],
)
def test_the_header_and_footer_of_buttons_are_shown_around_the_text(
    service: Service, browser: Any, locale: str, header: str, body: str, footer: str
) -> None:
    context = phone(browser, locale)
    # A question with a text header and a footer, as the live stream brings it (after
    # degrade: a ListMenu reaches the web chat as these Buttons, footer kept).
    question = {
        "id": "q-1",
        "content": {
            "kind": "buttons",
            "body": body,
            "header": header,
            "footer": footer,
            "buttons": [{"id": "kw:horari", "title": "Horari"}, {"id": "kw:on", "title": "On"}],
        },
    }
    serve_live_events(context, [question])
    chat = open_chat(context, service.base)
    bubble = chat.wait_for_selector(".msg.them:has(.buttons)", timeout=15_000)
    order = bubble.evaluate("b => [...b.children].map(n => n.className)")
    assert order == ["header text", "body", "footer", "buttons"]
    assert bubble.query_selector(".header").inner_text() == header
    assert bubble.query_selector(".body").inner_text() == body
    assert bubble.query_selector(".footer").inner_text() == footer
    # Smaller and muted: under the body's size, in grey rather than the text's colour.
    sizes = bubble.evaluate(
        "b => [b.querySelector('.body'), b.querySelector('.footer')]"
        ".map(n => [parseFloat(getComputedStyle(n).fontSize), getComputedStyle(n).color])"
    )
    (body_size, body_color), (footer_size, footer_color) = sizes
    assert footer_size < body_size
    assert footer_color != body_color
    footer_box = bubble.query_selector(".footer").bounding_box()
    body_box = bubble.query_selector(".body").bounding_box()
    assert footer_box is not None
    assert body_box is not None
    assert footer_box["y"] >= body_box["y"] + body_box["height"] - 1
    context.close()


def test_a_long_answer_in_parts_is_one_bubble(service: Service, browser: Any) -> None:
    context = phone(browser)
    body = "*Paraules clau*\n" + "\n".join(f'• TEMA {n}: «Àrea» "{n}"' for n in range(150))
    content = json.dumps({"kind": "text", "body": body, "preview_url": False})
    cut = [content[:1000], content[1000:2500], content[2500:]]
    events = [
        {"id": "long-1", "timestamp": "2026-11-30T10:00:00+00:00", "part": n, "parts": 3,
         "chunk": chunk}
        for n, chunk in enumerate(cut, 1)
    ]  # fmt: skip
    # Parts as the service's live stream brings them (here served by the test, second one twice).
    serve_live_events(context, [events[0], events[1], events[1], events[2]])
    chat = open_chat(context, service.base, "ca")
    bubble = chat.wait_for_selector(".msg.them:has-text('TEMA 149')", timeout=10_000)
    chat.wait_for_timeout(300)
    assert chat.locator(".msg.them").count() == 1
    text = bubble.inner_text()
    assert text.startswith('Paraules clau\n• TEMA 0: «Àrea» "0"')
    assert text.count("TEMA") == 150
    context.close()


def _long_answer_parts(event_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = "*Paraules clau*\n" + "\n".join(f"• TEMA {n}: «Àrea»" for n in range(150))
    content = {"kind": "text", "body": body, "preview_url": False}
    encoded = json.dumps(content)
    cut = [encoded[:1000], encoded[1000:2500], encoded[2500:]]
    parts = [
        {"id": event_id, "timestamp": "2026-11-30T10:00:00+00:00", "part": n, "parts": 3,
         "chunk": chunk}
        for n, chunk in enumerate(cut, 1)
    ]  # fmt: skip
    return content, parts


def _history_after_first(context: Any, messages: list[dict[str, Any]]) -> list[int]:
    """The page's first history read (on load) is empty, the next ones hold ``messages``."""
    reads: list[int] = []

    def history(route: Any) -> None:
        reads.append(1)
        data = {"messages": messages if len(reads) > 1 else [], "since": None}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(data))

    context.route("**/history?*", history)
    return reads


@pytest.mark.parametrize("gap", [True, False], ids=["seq-gap", "new-id-while-incomplete"])
def test_a_long_answer_missing_a_part_comes_from_the_history(
    service: Service, browser: Any, gap: bool
) -> None:
    context = phone(browser)
    content, parts = _long_answer_parts("long-2")
    after = {"id": "short-3", "timestamp": "2026-11-30T10:00:01+00:00",
             "content": {"kind": "text", "body": "Alguna cosa més?", "preview_url": False}}  # fmt: skip
    # The second part was dropped on the way: either the next event's seq says so (gap), or
    # (the seq counting started again) another message arrives while this one is incomplete.
    seqs = [1, 3, 4] if gap else [7, 1, 2]
    serve_live_events(context, [parts[0], parts[2], after], seqs)
    history = [{"direction": "out", "at": "2026-11-30T10:00:00+00:00", "id": "long-2",
                "content": content}]  # fmt: skip
    reads = _history_after_first(context, history)
    chat = open_chat(context, service.base, "ca")
    chat.wait_for_selector(".msg.them:has-text('TEMA 149')", timeout=10_000)
    chat.wait_for_selector(".msg.them:has-text('Alguna cosa més?')", timeout=10_000)
    chat.wait_for_timeout(300)
    assert chat.locator(".msg.them:has-text('TEMA 149')").count() == 1
    assert len(reads) >= 2
    context.close()


def test_after_a_reload_both_sides_come_back_in_order_once(service: Service, browser: Any) -> None:
    context = phone(browser)
    chat = open_chat(context, service.base, "ca")
    send(chat, "hola")
    chat.wait_for_selector(".msg.them", timeout=15_000)
    send(chat, "bus urbà")
    chat.wait_for_selector(".msg.them:has-text('Mataró Bus')", timeout=15_000)
    chat.wait_for_timeout(500)  # let the service mark the replies sent
    before = chat.evaluate(
        "() => [...document.querySelectorAll('.msg')].map(m => m.className + '|' + m.innerText)"
    )

    chat.reload()
    bus = chat.wait_for_selector(".msg.them:has-text('Mataró Bus')", timeout=15_000)
    chat.wait_for_timeout(1_000)  # anything the live stream would add twice has come by now
    after = chat.evaluate(
        "() => [...document.querySelectorAll('.msg')].map(m => m.className + '|' + m.innerText)"
    )
    assert after == before
    mine = [m for m in after if m.startswith("msg me|")]
    assert mine == ["msg me|hola", "msg me|bus urbà"]
    assert after.index("msg me|bus urbà") < next(
        i for i, m in enumerate(after) if "Mataró Bus" in m
    )
    assert chat.locator(".msg.them:has-text('Mataró Bus')").count() == 1
    # The last question's buttons still answer; it is the citizen's turn.
    assert not any(b.is_disabled() for b in bus.query_selector_all(".buttons button"))
    # A new message after the reload arrives live, once.
    send(chat, "horari de la deixalleria")
    chat.wait_for_selector(".msg.them:has-text('Volies dir')", timeout=15_000)
    chat.wait_for_timeout(500)
    assert chat.locator(".msg.them:has-text('Volies dir')").count() == 1
    context.close()


@contextlib.contextmanager
def city_website(html: bytes) -> Iterator[str]:
    """A page of the city's own website, on another origin (localhost, not 127.0.0.1)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_widget_on_the_city_website_lets_the_chat_share_the_location(
    service: Service, browser: Any
) -> None:
    # The chat is a cross-origin frame there: it gets the position only if the widget's
    # iframe allows it (without allow="geolocation" the browser denies it, code 1).
    html = (
        "<!doctype html><html lang='ca'><body><h1>Ajuntament</h1>"
        f"<script src='{service.base}/chat/mataro-web/widget.js' async></script></body></html>"
    ).encode()
    context = browser.new_context(
        viewport={"width": 1000, "height": 800},
        locale="ca-ES",
        permissions=["geolocation"],
        geolocation=MATARO_POINT,
    )
    with city_website(html) as city:
        page = context.new_page()
        page.goto(city)
        page.click("button[aria-expanded]")
        frame = page.frame_locator("iframe")
        frame.locator("#where").click()
        frame.locator(".msg.me", has_text="La meva ubicació").wait_for(timeout=15_000)
        assert frame.locator(".note.error").count() == 0
    context.close()


@pytest.mark.parametrize("width", [320, 360])
@pytest.mark.parametrize(("lang", "word"), [("ca", "bus urbà"), ("es", "autobús")])
def test_the_chat_fits_a_narrow_phone_without_scrolling_sideways(
    service: Service, browser: Any, width: int, lang: str, word: str
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 640}, locale=f"{lang}-ES")
    chat = open_chat(context, service.base, lang)
    send(chat, word)
    chat.wait_for_selector(".msg.them:has(.buttons):has-text('Mataró Bus')", timeout=15_000)
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    assert chat.evaluate(fits), chat.evaluate("document.documentElement.scrollWidth")
    # Every part of the message bar and every bubble is inside the screen.
    for selector in ("#form > :not([hidden]):not(.visually-hidden)", ".msg"):
        for box in chat.locator(selector).evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().toJSON())"
        ):
            assert box["left"] >= 0, (selector, box)
            assert box["right"] <= width, (selector, box)
    context.close()


@pytest.mark.parametrize(
    ("lang", "notice"),
    [
        ("ca", "Has arribat al màxim de 4096 caràcters per missatge"),
        ("es", "Has llegado al máximo de 4096 caracteres por mensaje"),
    ],
)
def test_a_long_paste_is_cut_at_the_services_limit_with_a_notice_and_keeps_its_lines(
    service: Service, browser: Any, lang: str, notice: str
) -> None:
    context = phone(browser, f"{lang}-ES")
    chat = open_chat(context, service.base, lang)
    posted: list[dict[str, Any]] = []
    chat.on(
        "request",
        lambda r: (
            posted.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and "/webhooks/webchat/" in r.url
            else None
        ),
    )
    box = chat.locator("#text")
    assert box.evaluate("b => b.tagName") == "TEXTAREA"
    one_line = box.bounding_box()
    assert one_line is not None
    # Shift+Enter is a new line and the box grows with it; Enter sends both lines as one message.
    box.click()
    chat.keyboard.type("Bon dia")
    chat.keyboard.press("Shift+Enter")
    chat.keyboard.type("carrer Nou 3")
    two_lines = box.bounding_box()
    assert two_lines is not None
    assert two_lines["height"] > one_line["height"] + 10
    assert chat.is_hidden("#limit")
    chat.keyboard.press("Enter")
    chat.wait_for_selector(".msg.me:has-text('carrer Nou 3')")
    assert posted[-1]["text"] == "Bon dia\ncarrer Nou 3"
    assert box.input_value() == ""
    # A 5,000-character paste: the box keeps the first 4,096 (the service's limit) and says so.
    box.click()
    chat.keyboard.insert_text(("línia llarga\n" * 400)[:5000])
    kept = box.input_value()
    assert len(kept) == 4096
    assert kept.count("\n") == 315  # the pasted lines stay lines
    assert notice in chat.inner_text("#limit")
    after = box.bounding_box()
    assert after is not None
    assert after["height"] < 200  # a few lines, then the box scrolls
    with chat.expect_response(lambda r: "/webhooks/webchat/" in r.url) as sent:
        chat.keyboard.press("Enter")
    assert sent.value.ok  # the service takes all of it
    assert posted[-1]["text"] == kept
    assert chat.locator(".note:has-text('No s')").count() == 0
    assert chat.is_hidden("#limit")
    context.close()


FORMATTED = [
    "Hola _cursiva_, *negreta*, ~ratllat~ i ```codi *no* _no_```",
    "<img src=x onerror=alert(1)> _<b>no</b>_ \"cometes\" 'simples' & més",
    "```<script>alert(1)</script>```",
    "Mira https://www.mataro.cat/010?a=1&b=2. (https://x.cat/a_(b)) *https://www.mataro.cat*",
    'javascript:alert(1) https://x.cat/"onmouseover=alert(1) _https://x.cat/a_b_',
    "snake_case_name, 2*3*4 i *negreta * no són estils; _línia\ntrencada_ tampoc",
    "_àccent_ é_x_ _ espai_ __doble__ ~~dos~~ *ok*!",
]


def test_whatsapp_styles_are_shown_as_the_console_shows_them_and_nothing_is_injected(
    service: Service, browser: Any
) -> None:
    from civicchat.service.console.formatting import whatsapp_html

    context = phone(browser)
    events = [
        {"id": f"styled-{n}", "timestamp": "2026-11-30T10:00:00+00:00",
         "content": {"kind": "text", "body": body, "preview_url": False}}
        for n, body in enumerate(FORMATTED)
    ]  # fmt: skip
    serve_live_events(context, events)
    dialogs: list[str] = []

    def dialog(shown: Any) -> None:
        dialogs.append(shown.message)
        shown.dismiss()

    context.on("dialog", dialog)
    chat = open_chat(context, service.base, "ca")
    chat.wait_for_selector(f".msg.them >> nth={len(FORMATTED) - 1}", timeout=10_000)
    shown = chat.locator(".msg.them").evaluate_all("els => els.map(e => e.innerHTML)")
    # The same HTML as the console's (a browser writes quotes in text as they are).
    expected = [
        str(whatsapp_html(body)).replace("&#34;", '"').replace("&#39;", "'") for body in FORMATTED
    ]
    assert shown == expected
    # What that is: styles as tags, the rest as text; no element the text tried to inject.
    first = chat.locator(".msg.them").first
    assert first.locator("em").inner_text() == "cursiva"
    assert first.locator("strong").inner_text() == "negreta"
    assert first.locator("s").inner_text() == "ratllat"
    assert first.locator("code").inner_text() == "codi *no* _no_"
    assert chat.locator(".msg.them img, .msg.them b, .msg.them script").count() == 0
    hrefs = chat.locator(".msg.them a").evaluate_all("els => els.map(a => a.href)")
    assert hrefs
    assert all(h.startswith("https://") for h in hrefs)
    assert chat.locator(".msg.them a[onmouseover]").count() == 0
    assert dialogs == []
    context.close()
