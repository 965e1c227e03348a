"""In a real browser: what a citizen sees in the web chat, and the console's top bar on a laptop."""

from __future__ import annotations

from typing import Any

import pytest
from browser_helpers import Service, login

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_keyword_list_is_bold_not_starred_and_the_language_switch_sticks(
    service: Service, browser: Any
) -> None:
    context = browser.new_context(viewport={"width": 420, "height": 720}, locale="ca-ES")
    failed: list[str] = []
    chat = context.new_page()
    chat.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    chat.goto(f"{service.base}/chat/mataro-web")
    assert "PARAULES CLAU" in chat.inner_text(".note.hello")
    chat.fill("#text", "PARAULES CLAU")
    chat.click("#send")

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
    context = browser.new_context(viewport={"width": 420, "height": 720}, locale="ca-ES")
    chat = context.new_page()
    chat.goto(f"{service.base}/chat/mataro-web?lang=ca")
    chat.fill("#text", "horari de la deixalleria")
    chat.click("#send")
    question = chat.wait_for_selector(".msg.them:has-text('Volia dir') .buttons", timeout=15_000)
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
    context = browser.new_context(viewport={"width": 420, "height": 720}, locale="es-ES")
    context.route("**/events?*", lambda route: route.abort())
    chat = context.new_page()
    chat.goto(f"{service.base}/chat/mataro-web")
    note = chat.wait_for_selector(".note.offline", timeout=10_000)
    assert note.inner_text() == "Conexión perdida; reconectando…"
    context.unroute("**/events?*")
    chat.wait_for_selector(".note.offline", state="detached", timeout=15_000)
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
