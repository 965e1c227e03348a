"""In a real browser: a citizen writes in the web chat, an operator sees it live and answers."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import OTHER_LOGIN, ROOT, Service, login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Screenshots go to a temporary directory, or to CIVICCHAT_SCREENSHOTS (``docs/img`` to refresh
# the ones in the documentation): a test run does not rewrite tracked files.
SHOTS = os.environ.get("CIVICCHAT_SCREENSHOTS")
QUESTION = "Bon dia, fa tres dies que hi ha un contenidor cremat davant de casa"
ANSWER = "Bon dia! Ho passem ara mateix al servei de neteja. Gràcies per avisar-nos."
MORE = "https://www.mataro.cat/ca/neteja"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(SHOTS) if SHOTS else tmp_path_factory.mktemp("screenshots")
    if not where.is_absolute():
        where = ROOT / where
    where.mkdir(parents=True, exist_ok=True)
    return where


def _shot(page: Any, where: Path, name: str) -> None:
    page.screenshot(path=str(where / name), full_page=False)


def test_citizen_operator_round_trip_live(service: Service, browser: Any, shots: Path) -> None:
    operator = browser.new_context(viewport={"width": 1366, "height": 800}, locale="ca-ES")
    citizen = browser.new_context(viewport={"width": 420, "height": 720}, locale="ca-ES")
    console = operator.new_page()
    login(console, service.base, "operador", service.passwords["operador"])
    console.wait_for_selector("#live-status.on")  # the live stream is connected
    assert console.locator("tr[data-conversation]").count() == 0

    chat = citizen.new_page()
    chat.goto(f"{service.base}/chat/mataro-web")
    chat.fill("#text", QUESTION)
    chat.click("#send")
    chat.wait_for_selector(".msg.me")

    # The conversation appears in the queue without reloading the page.
    row = console.wait_for_selector("tr[data-conversation]", timeout=15_000)
    conversation_id = row.get_attribute("data-conversation")
    assert console.evaluate("performance.getEntriesByType('navigation').length") == 1
    _shot(console, shots, "console-queue.png")

    console.click(f"tr[data-conversation='{conversation_id}'] a.button")
    console.wait_for_selector("#reply-body")
    assert QUESTION in console.inner_text("#messages")
    console.type("#reply-body", "/foto ")  # a canned response by its shortcut
    assert console.input_value("#reply-body").startswith("Ens pots enviar una foto")
    console.fill("#reply-body", ANSWER)
    console.click("#send")
    console.wait_for_url(re.compile(rf".*/console/conversations/{conversation_id}$"))
    console.wait_for_function(
        "text => document.querySelector('#messages').innerText.includes(text)", arg=ANSWER[:20]
    )
    assert console.get_attribute("#conv-state", "data-state") == "assigned"

    # The citizen sees the answer in the web chat.
    chat.wait_for_selector(f".msg.them:has-text('{ANSWER[:25]}')", timeout=15_000)
    _shot(console, shots, "console-conversation.png")
    _shot(chat, shots, "webchat-citizen.png")

    # WhatsApp styles shown as such, and a link that opens apart, never to this page's harm.
    console.fill("#reply-body", f"*Més informació*: {MORE} <b>no</b>")
    console.click("#send")
    link = console.wait_for_selector(f"#messages a[href='{MORE}']", timeout=15_000)
    assert link.get_attribute("target") == "_blank"
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    assert console.inner_text("#messages strong >> nth=-1") == "Més informació"
    assert "<b>no</b>" in console.inner_text("#messages")  # shown as typed, not as markup
    assert console.locator("#messages b").count() == 0

    # A location typed with a decimal comma, first out of range: the page comes back with what
    # was typed and the message next to the latitude; corrected, it is sent.
    console.check("input[name=kind][value=location]")
    assert not console.is_visible("#reply-body")  # a location has no text
    console.fill("input[name=latitude]", "141,5391")
    console.fill("input[name=longitude]", "2,4445")
    console.fill("input[name=name]", "Oficina d'Atenció Ciutadana")
    console.click("#send")
    console.wait_for_selector("[data-error=latitude]")
    assert "Latitud entre -90 i 90" in console.inner_text("[data-error=latitude]")
    assert console.input_value("input[name=longitude]") == "2,4445"
    assert console.input_value("input[name=name]") == "Oficina d'Atenció Ciutadana"
    assert console.is_checked("input[name=kind][value=location]")
    console.fill("input[name=latitude]", "41,5391")
    console.click("#send")
    console.wait_for_url(re.compile(rf".*/console/conversations/{conversation_id}$"))
    console.wait_for_selector("#messages a:has-text('Oficina d')", timeout=15_000)

    # Answered: the list no longer counts a wait for this citizen.
    console.goto(f"{service.base}/console")
    cells = console.locator(f"tr[data-conversation='{conversation_id}'] td")
    assert cells.nth(2).inner_text().strip() == "respost"

    # An operator of another city cannot open it (404, as if it did not exist).
    other = browser.new_context()
    intruder = other.new_page()
    login(intruder, service.base, OTHER_LOGIN, service.passwords[OTHER_LOGIN])
    response = intruder.goto(f"{service.base}/console/conversations/{conversation_id}")
    assert response is not None
    assert response.status == 404
    assert QUESTION not in intruder.content()
    assert (
        f'data-conversation="{conversation_id}"'
        not in intruder.goto(f"{service.base}/console").text()
    )
    for context in (operator, citizen, other):
        context.close()


def test_admin_pages_render_and_screenshots(service: Service, browser: Any, shots: Path) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 800}, locale="ca-ES")
    page = context.new_page()
    missing: list[str] = []  # nothing a page asks for is missing (the icon included)
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    login(page, service.base, "admin", service.passwords["admin"])
    page.goto(f"{service.base}/admin/accounts")
    assert "Xat del 010" in page.inner_text("main")
    _shot(page, shots, "admin-accounts.png")
    page.goto(f"{service.base}/admin/accounts/mataro-web/keywords")
    assert page.locator("table.list tbody tr").count() >= 60
    _shot(page, shots, "admin-keywords.png")
    page.goto(f"{service.base}/admin/accounts/mataro-web/keywords/cita_previa")
    page.click("button[name=action][value=preview]")
    page.wait_for_selector(".preview")
    # The preview shows the reply as WhatsApp will: its address is a link.
    preview_link = page.locator(".preview a[href='https://www.mataro.cat/ca/cita-previa']")
    assert preview_link.count() == 1
    _shot(page, shots, "admin-keyword-preview.png")
    page.goto(f"{service.base}/admin/accounts/mataro-web/hours")
    assert "de dilluns a divendres" in page.inner_text("main")
    _shot(page, shots, "admin-hours.png")
    page.goto(f"{service.base}/lang/es?next=/admin/operators")
    assert "Operadores y equipos" in page.inner_text("main")
    _shot(page, shots, "admin-operators-es.png")
    context.close()
    assert missing == []
    assert (shots / "admin-keywords.png").stat().st_size > 10_000
