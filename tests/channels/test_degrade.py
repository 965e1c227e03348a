import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicchat.channels.base import Capabilities
from civicchat.channels.degrade import degrade, match_numbered_reply, split_text
from civicchat.channels.telegram import TELEGRAM_CAPABILITIES
from civicchat.channels.webchat import WEBCHAT_CAPABILITIES
from civicchat.channels.whatsapp import WHATSAPP_CAPABILITIES
from civicchat.exceptions import UnsupportedContentError
from civicchat.messages import (
    Buttons,
    ListMenu,
    ListRow,
    ListSection,
    Location,
    LocationRequest,
    MarkRead,
    Media,
    MediaKind,
    ReplyButton,
    Template,
    Text,
)

PLAIN = Capabilities(max_text_length=200)
MENU = Buttons(
    body="Què vols consultar?",
    buttons=(
        ReplyButton(id="kw:bus", title="Bus"),
        ReplyButton(id="kw:taxi", title="Taxi"),
        ReplyButton(id="kw:oac", title="Oficina d'Atenció"),
        ReplyButton(id="kw:deixalleria", title="Deixalleria"),
    ),
)
LIST = ListMenu(
    body="Tràmits",
    button="Veure",
    sections=(
        ListSection(
            rows=(
                ListRow(id="padro", title="Padró", description="Volant en línia"),
                ListRow(id="ibi", title="IBI"),
            )
        ),
    ),
)


def test_buttons_become_numbered_options_in_catalan() -> None:
    (text,) = degrade(MENU, PLAIN, "ca")
    assert text == Text(
        body="Què vols consultar?\n\n1. Bus\n2. Taxi\n3. Oficina d'Atenció\n4. Deixalleria\n\n"
        "Respon amb el número de l'opció."
    )


def test_buttons_become_numbered_options_in_spanish() -> None:
    (text,) = degrade(MENU, PLAIN, "es-ES")
    assert isinstance(text, Text)
    assert text.body.endswith("Responde con el número de la opción.")


def test_buttons_that_fit_are_kept() -> None:
    three = Buttons(body="?", buttons=MENU.buttons[:3])
    assert degrade(three, WHATSAPP_CAPABILITIES) == [three]


def test_too_many_buttons_or_long_titles_on_whatsapp_become_numbered() -> None:
    (four,) = degrade(MENU, WHATSAPP_CAPABILITIES)
    assert isinstance(four, Text)
    long_title = Buttons(body="?", buttons=(ReplyButton(id="a", title="Un títol de més de vint"),))
    (text,) = degrade(long_title, WHATSAPP_CAPABILITIES)
    assert isinstance(text, Text)
    assert "1. Un títol de més de vint" in text.body


def test_list_becomes_buttons_when_they_fit() -> None:
    (buttons,) = degrade(LIST, WEBCHAT_CAPABILITIES)
    assert buttons == Buttons(
        body="Tràmits",
        buttons=(ReplyButton(id="padro", title="Padró"), ReplyButton(id="ibi", title="IBI")),
    )


def test_list_becomes_numbered_text_with_descriptions() -> None:
    (text,) = degrade(LIST, PLAIN, "ca")
    assert isinstance(text, Text)
    assert "1. Padró - Volant en línia\n2. IBI" in text.body


def test_list_is_kept_where_lists_exist() -> None:
    assert degrade(LIST, WHATSAPP_CAPABILITIES) == [LIST]


def test_location_becomes_a_map_link() -> None:
    location = Location(
        latitude=41.5381, longitude=2.4445, name="Ajuntament", address="La Riera, 48"
    )
    (text,) = degrade(location, WEBCHAT_CAPABILITIES)
    assert isinstance(text, Text)
    assert text.body.splitlines() == ["📍 Ajuntament", "La Riera, 48", location.map_url]
    assert degrade(location, TELEGRAM_CAPABILITIES) == [location]
    (unnamed,) = degrade(Location(latitude=1, longitude=2), PLAIN, "es")
    assert isinstance(unnamed, Text)
    assert unnamed.body.startswith("📍 Ubicación")


def test_location_request_becomes_instructions() -> None:
    (text,) = degrade(LocationRequest(body="On és?"), PLAIN, "ca")
    assert isinstance(text, Text)
    assert text.body == (
        "On és?\n\nPer enviar-nos la teva ubicació, fes servir l'opció d'ubicació del xat, "
        "o escriu-nos l'adreça."
    )
    (text,) = degrade(LocationRequest(body="¿Dónde está?"), PLAIN, "es")
    assert isinstance(text, Text)
    assert text.body.endswith(
        "Para enviarnos tu ubicación, usa la opción de ubicación del chat, "
        "o escríbenos la dirección."
    )


@pytest.mark.parametrize("caps", [PLAIN, WEBCHAT_CAPABILITIES, TELEGRAM_CAPABILITIES])
@pytest.mark.parametrize("language", ["ca", "es"])
def test_location_instructions_name_no_button_the_channel_may_not_have(
    caps: Capabilities, language: str
) -> None:
    # QA: the web chat told citizens to tap the paper clip 📎, which opens its photo picker.
    for piece in degrade(LocationRequest(body="?"), caps, language):
        if isinstance(piece, Text):
            assert "📎" not in piece.body
            assert "clip" not in piece.body


def test_a_channel_gives_its_own_location_hint() -> None:
    caps = Capabilities(
        share_location_hint={"ca": "Toca el botó 📍.", "es": "Toca el botón 📍."},
    )
    request = LocationRequest(body="On és?")
    assert degrade(request, caps, "ca") == [Text(body="On és?\n\nToca el botó 📍.")]
    assert degrade(request, caps, "es-ES") == [Text(body="On és?\n\nToca el botón 📍.")]
    # A language without the channel's words gets them in the rest of the wording's language.
    assert degrade(request, caps, "fr") == [Text(body="On és?\n\nToca el botó 📍.")]
    only_ca = Capabilities(share_location_hint={"ca": "Toca el botó 📍."})
    (text,) = degrade(request, only_ca, "es")
    assert isinstance(text, Text)
    assert text.body.endswith("usa la opción de ubicación del chat, o escríbenos la dirección.")
    # A channel that asks for a location natively never needs the words.
    assert degrade(request, TELEGRAM_CAPABILITIES, "ca") == [request]


@pytest.mark.parametrize(
    "hint",
    [{"ca": ""}, {"ca": "  "}, {"": "Toca."}, {"ca": 3}, ["ca", "Toca."], "Toca el botó."],
)
def test_a_bad_location_hint_is_refused(hint: object) -> None:
    with pytest.raises(ValueError, match="share_location_hint must map language codes"):
        Capabilities(share_location_hint=hint)  # type: ignore[arg-type]


def test_capabilities_stay_hashable_and_comparable_with_a_hint() -> None:
    caps = Capabilities(share_location_hint={"ca": "Toca el botó 📍."})
    assert caps == Capabilities(share_location_hint={"ca": "Toca el botó 📍."})
    assert caps != Capabilities()
    assert hash(caps) == hash(Capabilities(share_location_hint={"es": "x"}))


def test_template_falls_back_to_its_text() -> None:
    template = Template(name="reobrir", language="ca", fallback_text="Vols continuar la conversa?")
    assert degrade(template, TELEGRAM_CAPABILITIES) == [Text(body="Vols continuar la conversa?")]
    assert degrade(template, WHATSAPP_CAPABILITIES) == [template]
    with pytest.raises(UnsupportedContentError, match="fallback_text"):
        degrade(Template(name="t", language="ca"), TELEGRAM_CAPABILITIES)


def test_mark_read_is_dropped_without_read_receipts() -> None:
    assert degrade(MarkRead(message_id="m"), TELEGRAM_CAPABILITIES) == []
    assert degrade(MarkRead(message_id="m"), WHATSAPP_CAPABILITIES) == [MarkRead(message_id="m")]


def test_long_text_is_split_at_sentences() -> None:
    body = "Primera frase. " * 30
    parts = degrade(Text(body=body), Capabilities(max_text_length=100))
    assert len(parts) > 1
    for part in parts:
        assert isinstance(part, Text)
        assert len(part.body) <= 100
        assert part.body.endswith(".")


def test_split_prefers_paragraphs_then_lines() -> None:
    text = "a" * 40 + "\n\n" + "b" * 40 + "\n" + "c" * 40
    assert split_text(text, 90) == ["a" * 40, "b" * 40 + "\n" + "c" * 40]
    assert split_text("x" * 50 + "\n" + "y" * 50, 60) == ["x" * 50, "y" * 50]


def test_split_cuts_a_word_only_when_nothing_else_fits() -> None:
    assert split_text("z" * 25, 10) == ["z" * 10, "z" * 10, "z" * 5]


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("abc é.!? \n"), min_size=0, max_size=600),
    st.integers(min_value=5, max_value=120),
)
def test_split_keeps_every_character_and_the_limit(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )


@pytest.mark.parametrize(
    ("answer", "reply_id"),
    [
        ("1", "kw:bus"),
        (" 2 ", "kw:taxi"),
        ("3.", "kw:oac"),
        ("4)", "kw:deixalleria"),
        ("opció 2", "kw:taxi"),
        ("Opción 1", "kw:bus"),
        ("TAXI", "kw:taxi"),
        ("oficina d'atencio", "kw:oac"),
        ("5", None),
        ("0", None),
        ("12 autobusos", None),
        ("bus de nit", None),
    ],
)
def test_numbered_answers_map_back_to_the_button(answer: str, reply_id: str | None) -> None:
    reply = match_numbered_reply(answer, MENU)
    assert (reply.reply_id if reply else None) == reply_id


def test_numbered_answer_to_a_list_keeps_the_description() -> None:
    reply = match_numbered_reply("1", LIST)
    assert reply is not None
    assert (reply.reply_id, reply.description, reply.source) == ("padro", "Volant en línia", "list")


def test_capabilities_are_validated() -> None:
    with pytest.raises(ValueError, match="max_buttons"):
        Capabilities(buttons=True)
    with pytest.raises(ValueError, match="max_text_length"):
        Capabilities(max_text_length=3)


def test_buttons_with_a_body_over_the_button_limit_become_numbered_text() -> None:
    long_body = "Explicació llarga. " * 70  # about 1,330 characters: over WhatsApp's 1,024
    menu = Buttons(body=long_body, buttons=MENU.buttons[:2])
    pieces = degrade(menu, WHATSAPP_CAPABILITIES, "ca")
    assert all(isinstance(p, Text) for p in pieces)
    assert "1. Bus\n2. Taxi" in pieces[-1].body  # type: ignore[union-attr]
    assert degrade(menu, TELEGRAM_CAPABILITIES) == [menu]


# --------------------------------------------------------------------------- buttons under media

PLAN = Media(
    media_kind=MediaKind.DOCUMENT,
    link="https://www.mataro.cat/bus/planol.pdf",
    caption="Plànol de la xarxa",
    filename="planol.pdf",
)
BUS = Buttons(
    body="🚌 Mataró Bus: https://www.mataro.cat/bus",
    media=PLAN,
    buttons=(
        ReplyButton(id="kw:targetes", title="Targetes i tarifes"),
        ReplyButton(id="kw:tren", title="Tren"),
    ),
)


@pytest.mark.parametrize(
    "caps", [WHATSAPP_CAPABILITIES, TELEGRAM_CAPABILITIES, WEBCHAT_CAPABILITIES]
)
def test_buttons_under_media_stay_one_message_where_the_channel_can(caps: Capabilities) -> None:
    assert degrade(BUS, caps, "ca") == [BUS]


def test_buttons_under_media_without_media_headers_are_the_file_then_the_buttons() -> None:
    caps = Capabilities(buttons=True, max_buttons=3)  # buttons, but no media header
    assert not caps.button_media
    assert degrade(BUS, caps, "ca") == [PLAN, BUS.model_copy(update={"media": None})]


def test_buttons_under_media_without_buttons_are_the_file_with_numbered_options() -> None:
    (only,) = degrade(BUS, PLAIN, "es")
    assert isinstance(only, Media)
    assert (only.link, only.filename) == (PLAN.link, PLAN.filename)
    assert only.caption == (
        "🚌 Mataró Bus: https://www.mataro.cat/bus\n\n1. Targetes i tarifes\n2. Tren\n\n"
        "Responde con el número de la opción."
    )
    assert match_numbered_reply("2", BUS) is not None


def test_buttons_under_media_with_too_long_a_caption_are_the_file_then_numbered_text() -> None:
    long_body = "Una frase. " * 120  # 1,320 characters: over a caption, under a text
    content = BUS.model_copy(update={"body": long_body.strip()})
    pieces = degrade(content, PLAIN, "ca")
    assert pieces[0] == PLAN
    assert all(isinstance(p, Text) for p in pieces[1:])
    joined = "\n".join(p.body for p in pieces[1:] if isinstance(p, Text))
    assert "1. Targetes i tarifes" in joined
    # A channel with buttons and media headers but a body over 1,024: file, then the options.
    pieces = degrade(content, WHATSAPP_CAPABILITIES, "ca")
    assert pieces[0] == PLAN
    assert all(isinstance(p, Text) for p in pieces[1:])


def test_a_caption_limit_narrower_than_the_body_keeps_the_buttons_apart() -> None:
    caps = Capabilities(buttons=True, max_buttons=3, button_media=True, max_caption_length=20)
    assert degrade(BUS, caps, "ca") == [PLAN, BUS.model_copy(update={"media": None})]


def test_capabilities_refuse_an_empty_caption_limit() -> None:
    with pytest.raises(ValueError, match="max_caption_length"):
        Capabilities(max_caption_length=0)


def test_the_location_hint_example_in_docs_channels_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = Path(__file__).parents[2] / "docs" / "channels.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    (example,) = [b for b in blocks if "share_location_hint" in b]
    exec(compile(example, str(doc), "exec"), {"__name__": "docs_channels"})
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "Per enviar-nos la teva ubicació, fes servir l'opció d'ubicació del xat, o escriu-nos "
        "l'adreça.",
        "Toca el botón 📍.",
    ]
    assert "# Toca el botón 📍." in example


def test_a_caption_over_the_limit_goes_as_text_after_the_file() -> None:
    caption = " ".join(f"paraula{i}" for i in range(200)) + " https://www.mataro.cat/plànol"
    assert len(caption) > 1024
    plan = Media(media_kind=MediaKind.DOCUMENT, link="https://example.org/p.pdf", caption=caption)
    for caps in (WHATSAPP_CAPABILITIES, TELEGRAM_CAPABILITIES):
        media, *texts = degrade(plan, caps, "ca")
        assert isinstance(media, Media)
        assert media.caption is None
        assert all(isinstance(t, Text) and len(t.body) <= caps.max_text_length for t in texts)
        assert " ".join(t.body for t in texts).split() == caption.split()
    short = plan.model_copy(update={"caption": "Plànol"})
    assert degrade(short, WHATSAPP_CAPABILITIES, "ca") == [short]
