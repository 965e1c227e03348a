"""Small things the QA walkthrough found: buttons shown with their labels, "All" complete, the
case page's conversation link and English words, the browser's language, one register, the icon."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cases_service_helpers import CaseService, case_service
from console_helpers import PASSWORD, World, login, login_as

from civicchat.cases.models import CaseStatus, NewCase
from civicchat.messages import Buttons, Media, MediaKind, OutboundMessage, ReplyButton
from civicchat.service.console import hash_password
from civicchat.service.console.i18n import TEXTS
from civicchat.service.console.web import browser_language
from civicchat.storage.base import OperatorRole


async def test_a_buttons_message_shows_its_labels_and_its_media_header(world: World) -> None:
    conv = await world.conversation("wa-a")
    message = OutboundMessage(
        channel="whatsapp",
        account="wa-a",
        recipient_id=conv.recipient_id,
        content=Buttons(
            body="Bus urbà de Mataró",
            media=Media(
                media_kind=MediaKind.DOCUMENT,
                link="https://www.mataro.cat/bus.pdf",
                filename="bus.pdf",
            ),
            buttons=(
                ReplyButton(id="kw:tren", title="Tren"),
                ReplyButton(id="kw:taxi", title="Taxi"),
            ),
        ),
    )
    async with world.store.transaction() as tx:
        await tx.enqueue([message], key_prefix="bot:1", conversation_id=conv.id)
    async with world.client() as client:
        await login_as(client, "op_a")
        page = (await client.get(f"/console/conversations/{conv.id}")).text
    shown = page[page.index("Bus urbà de Mataró") - 400 :]
    assert '<li class="button-label">Tren</li><li class="button-label">Taxi</li>' in shown
    assert 'href="https://www.mataro.cat/bus.pdf"' in shown
    assert "bus.pdf</a>" in shown


async def test_all_lists_every_attended_conversation_the_supervisors_own_too(
    world: World,
) -> None:
    own = await world.conversation("wa-a", state="assigned", assigned=world.ops["sup_a"])
    other = await world.conversation("wa-a", state="assigned", assigned=world.ops["op_a"])
    async with world.client() as client:
        await login_as(client, "sup_a")
        page = (await client.get("/console")).text
    everything = page[page.index("<h2>Totes") :]
    assert f'data-conversation="{own.id}"' in everything
    assert f'data-conversation="{other.id}"' in everything


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("es-ES,es;q=0.9,en;q=0.8", "es"),
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9,ca;q=0.5,es;q=0.4", "ca"),
        ("de, es;q=0, en;q=0.1", "en"),
        ("es;q=0.2, ca;q=0.7", "ca"),
        ("fr, de", None),
        ("", None),
        ("es;q=nonsense, en", "en"),
    ],
)
def test_the_browsers_language_is_the_first_the_console_speaks(
    header: str, expected: str | None
) -> None:
    assert browser_language(header) == expected


async def test_the_login_page_speaks_the_browsers_language_until_one_is_chosen(
    world: World,
) -> None:
    async with world.client() as client:
        spanish = await client.get("/login", headers={"Accept-Language": "es-ES,es;q=0.9"})
        english = await client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
        client.cookies.set("cc_lang", "ca")
        chosen = await client.get("/login", headers={"Accept-Language": "es-ES,es;q=0.9"})
    assert '<html lang="es">' in spanish.text
    assert "Contraseña" in spanish.text
    assert '<html lang="en">' in english.text
    assert '<html lang="ca">' in chosen.text


def test_one_register_labels_in_the_infinitive_sentences_formal() -> None:
    # Labels never in the familiar imperative; sentences never in "tu" / "tú".
    familiar_ca = re.compile(r"^(Entra|Surt|Obre|Tanca|Envia|Desa|Canvia|Edita|Crea|Esborra)\b")
    for key, texts in TEXTS.items():
        assert not familiar_ca.match(texts["ca"]), (key, texts["ca"])
        assert not re.search(r"\b(tens|has de|torna-ho|escriu)\b", texts["ca"], re.I), key
        assert not re.search(r"\b(tienes|vuelve a|escribe|repítela)\b", texts["es"], re.I), key
    assert TEXTS["change_password"]["ca"] == "Canviar la contrasenya"
    assert TEXTS["forbidden"]["ca"].startswith("No teniu permís")


async def test_every_page_has_an_icon(world: World) -> None:
    async with world.client() as client:
        icon = await client.get("/favicon.ico")
        page = await client.get("/login")
        static = await client.get("/static/console/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")
    assert '<link rel="icon" type="image/svg+xml" href="/static/console/favicon.svg">' in page.text
    assert static.status_code == 200


# --------------------------------------------------------------------------- cases


@pytest.fixture
async def svc(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with case_service(tmp_path) as service:
        async with service.state.store.transaction() as tx:
            await tx.operators.add_operator(
                account="mataro",
                name="Anna",
                login="anna",
                password_hash=hash_password(PASSWORD),
                role=OperatorRole.SUPERVISOR,
            )
        yield service


async def test_a_case_page_links_its_conversation_and_speaks_english(svc: CaseService) -> None:
    visitor = "visitor_0123456789abcdef"
    async with svc.state.store.transaction() as tx:
        contact = await tx.contacts.identify("webchat", "mataro-web", visitor)
        conv = await tx.conversations.create(
            channel="webchat",
            account="mataro-web",
            contact_id=contact.id,
            recipient_id=visitor,
            state="bot",
        )
    services = svc.state.runtime.cases
    case = await services.cases.create(
        NewCase(
            category="enllumenat",
            description="La farola no s'encén",
            channel="webchat",
            account="mataro-web",
            citizen_id=visitor,
            language="ca",
        ),
        prefix="MTR",
        at=svc.state.clock.now(),
        actor="citizen",
    )
    await services.change_status(case.reference, CaseStatus.IN_PROGRESS, note="", actor="test")
    without = await services.cases.create(
        NewCase(
            category="enllumenat",
            description="Sense conversa",
            channel="webchat",
            account="mataro-web",
            citizen_id="visitor_fedcba9876543210",  # no conversation with this one
            language="ca",
        ),
        prefix="MTR",
        at=svc.state.clock.now(),
        actor="citizen",
    )
    assert (await login(svc.client, "anna")).status_code == 303
    catalan = (await svc.client.get(f"/console/cases/{case.reference}")).text
    svc.client.cookies.set("cc_lang", "en")
    english = (await svc.client.get(f"/console/cases/{case.reference}")).text
    listing = (await svc.client.get("/console/cases")).text
    alone = (await svc.client.get(f"/console/cases/{without.reference}")).text
    assert f'href="/console/conversations/{conv.id}" class="conversation-link">Conversa<' in catalan
    assert f'href="/console/conversations/{conv.id}"' in english
    assert "in progress" in english
    assert "en curs" not in english
    assert "in progress" in listing
    assert "conversation-link" not in alone
