"""The Mataró reference content: catalog, templates, canned responses and environment file.

These files are data a city edits, so the tests check the properties the service relies on: both
languages everywhere, no alias shared by two keywords, every topic of the 010 covered, WhatsApp
template parameters that match their bodies, placeholder (not real) secrets.
"""

from __future__ import annotations

import re
import string
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parents[2]
MATARO = ROOT / "examples" / "mataro"
LANGS = ("ca", "es")
TOPICS_OF_THE_010 = {
    "mobility",
    "weather",
    "participation",
    "procedures",
    "transport",
    "police",
    "incidents",
    "culture",
    "services",
    "routes",
    "tourism",
    "media",
}
# Services the 010 is asked about every day; each must have its own keyword.
REQUIRED_KEYWORDS = {
    "telefon_010",
    "cita_previa",
    "padro",
    "deixalleria",
    "grua",
    "objectes_perduts",
    "policia",
    "biblioteques",
    "mercats",
    "platges",
    "agenda",
    "bus",
    "tv",
    "radio",
    "oac",
    "temps",
}
INDEX_WORDS = {"paraules clau", "paraula clau", "palabras clave", "palabra clave"}
URL = re.compile(r"https?://[^\s)]+")
# Mataró and its surroundings, generously.
LAT_RANGE = (41.50, 41.60)
LON_RANGE = (2.38, 2.50)


def _load(name: str) -> Any:
    with (MATARO / name).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def catalog() -> dict[str, Any]:
    data = _load("catalog.yaml")
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def keywords(catalog: dict[str, Any]) -> list[dict[str, Any]]:
    return list(catalog["keywords"])


def _fold(text: str) -> str:
    """Accent-insensitive, punctuation-insensitive form (a stand-in for the engine's folding)."""
    text = unicodedata.normalize("NFKD", text.casefold().replace("l·l", "ll"))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"\b(?:[ldsmtn]|qu)'(?=\w)", "", text)
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _alias_key(alias: str) -> str:
    try:
        from civicchat.keywords.catalog import alias_key
    except ImportError:  # the engine's own comparison form, when the engine is installed
        return _fold(alias)
    return alias_key(alias)


def _localized(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        return dict.fromkeys(LANGS, value)
    assert isinstance(value, dict), value
    return value


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


# --------------------------------------------------------------------------- catalog


def test_catalog_languages_and_size(
    catalog: dict[str, Any], keywords: list[dict[str, Any]]
) -> None:
    assert catalog["languages"] == ["ca", "es"]
    assert len(keywords) >= 60
    ids = [kw["id"] for kw in keywords]
    assert len(ids) == len(set(ids)), "keyword ids must be unique"
    assert all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids)


def test_every_keyword_has_aliases_and_reply_in_both_languages(
    keywords: list[dict[str, Any]],
) -> None:
    for kw in keywords:
        for lang in LANGS:
            aliases = kw["aliases"].get(lang)
            assert aliases, f"{kw['id']}: no aliases in {lang}"
            assert all(isinstance(a, str) and a.strip() for a in aliases), kw["id"]
            reply = kw["reply"].get(lang)
            assert isinstance(reply, str), f"{kw['id']} [{lang}]"
            assert len(reply.strip()) >= 20, f"{kw['id']} [{lang}]"
            assert len(reply) <= 1024, f"{kw['id']} [{lang}]: keep replies short"
        assert kw["reply"]["ca"] != kw["reply"]["es"], f"{kw['id']}: the two replies are equal"
        assert set(kw["aliases"]) <= set(LANGS)
        assert set(kw["reply"]) <= set(LANGS)


def test_every_topic_of_the_010_is_covered_and_named(
    catalog: dict[str, Any], keywords: list[dict[str, Any]]
) -> None:
    topics = catalog["topics"]
    assert set(topics) == TOPICS_OF_THE_010
    for topic, names in topics.items():
        assert set(names) == set(LANGS), topic
        assert all(names.values()), topic
    used = {kw["topic"] for kw in keywords}
    assert used == TOPICS_OF_THE_010
    for topic in TOPICS_OF_THE_010:
        assert sum(kw["topic"] == topic for kw in keywords) >= 3, topic


def test_required_services_have_keywords(keywords: list[dict[str, Any]]) -> None:
    missing = REQUIRED_KEYWORDS - {kw["id"] for kw in keywords}
    assert not missing


def test_no_alias_belongs_to_two_keywords(keywords: list[dict[str, Any]]) -> None:
    owner: dict[str, str] = {}
    clashes = []
    for kw in keywords:
        for lang in LANGS:
            for alias in kw["aliases"][lang]:
                key = _alias_key(alias)
                assert key, f"{kw['id']}: alias {alias!r} is empty once folded"
                if owner.setdefault(key, kw["id"]) != kw["id"]:
                    clashes.append((alias, owner[key], kw["id"]))
    assert not clashes


def test_index_words_are_left_to_the_engine(keywords: list[dict[str, Any]]) -> None:
    for kw in keywords:
        for lang in LANGS:
            for alias in kw["aliases"][lang]:
                folded = _fold(alias)
                assert not any(w in folded for w in INDEX_WORDS), (kw["id"], alias)
                assert folded not in {"paraules", "palabras", "clau", "clave"}, (kw["id"], alias)


def test_citizens_can_type_it_without_accents(keywords: list[dict[str, Any]]) -> None:
    # "horario autobus" must find the bus keyword, as typed on a phone without accents.
    bus = next(kw for kw in keywords if kw["id"] == "bus")
    assert "horario autobus" in {_fold(a) for a in bus["aliases"]["es"]}
    assert "horari bus" in {_fold(a) for a in bus["aliases"]["ca"]}


def test_replies_render_with_the_documented_context(keywords: list[dict[str, Any]]) -> None:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    for flt in ("date", "time", "datetime"):
        env.filters[flt] = str
    context = {
        "name": "",
        "now": datetime(2026, 3, 27, 17, 5, tzinfo=ZoneInfo("Europe/Madrid")),
        "office_hours": "de dilluns a divendres, de 8:00 a 19:00",
        "language": "ca",
    }
    rendered_hours = 0
    for kw in keywords:
        for lang in LANGS:
            text = env.from_string(kw["reply"][lang]).render(context)
            assert "{{" not in text
            assert "{%" not in text
            rendered_hours += str(context["office_hours"]) in text
    assert rendered_hours >= 2, "the office-hours keyword must show the hours"


def test_reply_links_are_https_and_mostly_the_councils(keywords: list[dict[str, Any]]) -> None:
    hosts: list[str] = []
    for kw in keywords:
        for lang in LANGS:
            for url in URL.findall(kw["reply"][lang]):
                parts = urlsplit(url)
                assert parts.scheme == "https", (kw["id"], url)
                assert "." in parts.netloc, (kw["id"], url)
                hosts.append(parts.netloc)
    council = sum(h.endswith("mataro.cat") for h in hosts)
    assert council / len(hosts) > 0.8
    with_link = sum(bool(URL.search(kw["reply"]["ca"])) for kw in keywords)
    assert with_link >= len(keywords) - 3


def test_route_links_point_at_the_places_they_name(keywords: list[dict[str, Any]]) -> None:
    by_id = {kw["id"]: kw for kw in keywords}
    for route, place in (("ruta_oac", "oac"), ("ruta_deixalleria", "deixalleria")):
        loc = by_id[place]["location"]
        for lang in LANGS:
            (url,) = URL.findall(by_id[route]["reply"][lang])
            host = urlsplit(url).netloc
            assert host in {"www.google.com", "www.openstreetmap.org"}, url
            coords = re.search(r"(-?\d+\.\d+)(?:,|%2C)(-?\d+\.\d+)", url)
            assert coords, url
            assert float(coords[1]) == pytest.approx(loc["latitude"], abs=1e-3)
            assert float(coords[2]) == pytest.approx(loc["longitude"], abs=1e-3)


def test_rich_fields(keywords: list[dict[str, Any]]) -> None:
    ids = {kw["id"] for kw in keywords}
    buttons = locations = documents = 0
    for kw in keywords:
        for button in kw.get("buttons", []):
            buttons += 1
            assert button["keyword"] in ids, kw["id"]
            assert button["keyword"] != kw["id"], kw["id"]
            for lang, title in _localized(button["title"]).items():
                assert 0 < len(title) <= 20, (kw["id"], lang, title)
        assert len(kw.get("buttons", [])) <= 3, kw["id"]
        if "location" in kw:
            locations += 1
            loc = kw["location"]
            assert LAT_RANGE[0] < loc["latitude"] < LAT_RANGE[1], kw["id"]
            assert LON_RANGE[0] < loc["longitude"] < LON_RANGE[1], kw["id"]
            assert "Mataró" in loc["address"]
            assert set(_localized(loc["name"])) == set(LANGS)
        if "media" in kw:
            media = kw["media"]
            assert media["kind"] in {"image", "document", "video", "audio"}
            assert urlsplit(media["url"]).scheme == "https"
            assert set(_localized(media["caption"])) == set(LANGS)
            if media["kind"] == "document":
                documents += 1
                assert media["filename"].endswith(".pdf")
                assert media["url"].endswith(media["filename"])
        if "title" in kw:
            titles = _localized(kw["title"])
            assert set(titles) == set(LANGS), kw["id"]
            # Titles label the "Volia dir...?" buttons: WhatsApp cuts button titles at 20.
            assert all(0 < len(t) <= 20 for t in titles.values()), kw["id"]
    assert buttons >= 20
    assert locations >= 2
    assert documents >= 1
    oac = next(kw for kw in keywords if kw["id"] == "oac")
    assert oac["location"]["address"] == "La Riera, 48, 08301 Mataró"


def test_tv_and_radio_are_mataro_audiovisual(keywords: list[dict[str, Any]]) -> None:
    by_id = {kw["id"]: kw for kw in keywords}
    for kid, name in (("tv", "TV Mataró"), ("radio", "Mataró Ràdio")):
        for lang in LANGS:
            assert name in by_id[kid]["reply"][lang]
            assert "Mataró Audiovisual" in by_id[kid]["reply"][lang]


def test_the_library_loads_the_catalog(keywords: list[dict[str, Any]]) -> None:
    from civicchat.keywords.catalog import load_catalog

    loaded = load_catalog(MATARO / "catalog.yaml")
    assert [kw.id for kw in loaded.keywords] == [kw["id"] for kw in keywords]
    assert loaded.default_language == "ca"
    assert loaded.topic_name("media", "es") == "TV y radio"
    oac = loaded.keyword("oac")
    assert oac is not None
    assert oac.location is not None
    assert oac.location.address == "La Riera, 48, 08301 Mataró"


# What citizens type, as the 010 sees it, and the keyword that must answer (one or more per topic).
CITIZEN_PHRASES = [
    ("horario autobús", "bus", "es"),
    ("horaris bus", "bus", "ca"),
    ("on és la deixalleria", "deixalleria", "ca"),
    ("com arribo a la deixalleria", "ruta_deixalleria", "ca"),
    ("se me ha llevado la grúa el coche", "grua", "es"),
    ("vull demanar cita prèvia", "cita_previa", "ca"),
    ("necesito el volante de empadronamiento", "volant_padro", "es"),
    ("he perdut la cartera", "objectes_perduts", "ca"),
    ("telèfon de la policia local", "policia", "ca"),
    ("quin temps farà demà", "temps", "ca"),
    ("previsión del tiempo", "temps", "es"),
    ("hay un bache en la calle", "voreres", "es"),
    ("dónde puedo tirar un sofá", "voluminosos", "es"),
    ("pressupostos participatius", "pressupostos", "ca"),
    ("quiero poner una reclamación", "queixes", "es"),
    ("tren a barcelona", "tren", "ca"),
    ("agenda cultural", "agenda", "ca"),
    ("bibliotecas", "biblioteques", "es"),
    ("mercadillo", "mercats", "es"),
    ("playa", "platges", "es"),
    ("com arribar a l'ajuntament", "ruta_oac", "ca"),
    ("oficina de turismo", "turisme", "es"),
    ("mataró ràdio", "radio", "ca"),
    ("televisión", "tv", "es"),
    ("cuándo abre la oficina", "horari", "es"),
]


def test_what_citizens_type_finds_the_right_keyword() -> None:
    from civicchat.keywords.catalog import load_catalog
    from civicchat.keywords.engine import KeywordEngine

    engine = KeywordEngine(load_catalog(MATARO / "catalog.yaml"))
    wrong = []
    for text, keyword_id, language in CITIZEN_PHRASES:
        found = engine.match(text)
        got = None if found is None else (found.keyword_id, found.language)
        if got != (keyword_id, language):
            wrong.append((text, got))
    assert not wrong
    # A request for a person is not a keyword: routing hands it to the 010.
    assert engine.match("Vull parlar amb una persona") is None
    assert engine.match("Quiero hablar con una persona") is None


# --------------------------------------------------------------------------- templates

ROUTING_KEYS = (
    "ack",
    "out_of_hours",
    "out_of_hours_unknown",
    "reminder",
    "reminder_position",
    "out_of_hours_reminder",
    "out_of_hours_reminder_unknown",
)
TEMPLATE_FIELDS = {
    "ack": set(),
    "out_of_hours": {"reopening", "hours"},
    "out_of_hours_unknown": set(),
    "reminder": set(),
    "reminder_position": {"position"},
    "out_of_hours_reminder": {"reopening"},
    "out_of_hours_reminder_unknown": set(),
    "first_contact": {"privacy_url"},
    "reengagement": set(),
}
# Texts that only ever answer a message just received (inside WhatsApp's 24-hour window) need
# no approved template.
NO_TEMPLATE = {
    "reminder",
    "reminder_position",
    "out_of_hours_reminder",
    "out_of_hours_reminder_unknown",
}


@pytest.fixture(scope="module")
def templates() -> dict[str, Any]:
    data = _load("templates.yaml")
    assert isinstance(data, dict)
    assert data["languages"] == ["ca", "es"]
    return data


def test_every_message_template_is_there_in_both_languages(templates: dict[str, Any]) -> None:
    entries = templates["templates"]
    assert set(entries) == set(TEMPLATE_FIELDS)
    for key, entry in entries.items():
        for lang in LANGS:
            text = entry["text"][lang]
            assert _fields(text) == TEMPLATE_FIELDS[key], (key, lang)
            assert len(text) <= 4096
        assert entry["text"]["ca"] != entry["text"]["es"], key


def test_whatsapp_templates_match_their_parameters(templates: dict[str, Any]) -> None:
    names = set()
    for key, entry in templates["templates"].items():
        if key in NO_TEMPLATE:
            assert "whatsapp" not in entry, key
            continue
        wa = entry["whatsapp"]
        # WhatsApp Manager only accepts lower-case letters, digits and underscores.
        assert re.fullmatch(r"[a-z0-9_]{1,512}", wa["name"]), wa["name"]
        assert wa["name"] not in names
        names.add(wa["name"])
        assert wa["category"] in {"UTILITY", "MARKETING", "AUTHENTICATION"}
        params = wa["parameters"]
        assert set(params) == TEMPLATE_FIELDS[key], key
        for lang in LANGS:
            body = wa["body"][lang]
            assert len(body) <= 1024, (key, lang)
            placeholders = [int(n) for n in re.findall(r"\{\{(\d+)\}\}", body)]
            assert sorted(set(placeholders)) == list(range(1, len(params) + 1)), (key, lang)
            # Meta rejects bodies that start or end with a parameter.
            assert not body.startswith("{{"), (key, lang)
            assert not body.rstrip(".").endswith("}}"), (key, lang)
            if params:
                assert len(wa["examples"][lang]) == len(params), (key, lang)
        button = wa.get("quick_reply_button")
        if button:
            assert all(0 < len(button[lang]) <= 25 for lang in LANGS)
    reengage = templates["templates"]["reengagement"]["whatsapp"]
    assert reengage["name"] == "reprendre_conversa"
    # civicchat.routing sends the re-engagement template without body parameters.
    assert reengage["parameters"] == []


def test_privacy_notice_says_what_the_privacy_page_says(templates: dict[str, Any]) -> None:
    notice = templates["templates"]["first_contact"]
    urls = templates["privacy_url"]
    for lang, months in (("ca", "12 mesos"), ("es", "12 meses")):
        text = notice["text"][lang].format(privacy_url=urls[lang])
        assert urls[lang] in text
        assert "112" in text
        assert months in text
        assert months in notice["whatsapp"]["body"][lang]
        assert urlsplit(urls[lang]).netloc == "www.mataro.cat"
    privacy_doc = (ROOT / "docs" / "privacy.md").read_text(encoding="utf-8")
    for lang in LANGS:
        # The page quotes the notice word for word, in both languages.
        assert notice["text"][lang].format(privacy_url=urls[lang]) in privacy_doc


def test_routing_texts_accept_the_templates(templates: dict[str, Any]) -> None:
    from civicchat.routing.texts import RoutingTexts

    texts = RoutingTexts({k: templates["templates"][k]["text"] for k in ROUTING_KEYS})
    out = texts.render(
        "out_of_hours", "es", reopening="el lunes a las 8:00", hours="de 8:00 a 19:00"
    )
    assert "el lunes a las 8:00" in out
    assert "PALABRAS CLAVE" in out
    assert "PARAULES CLAU" in texts.render("out_of_hours_unknown", "ca")
    # The reminder speaks as «tu», like the rest.
    assert "et respondrà" in texts.render("reminder", "ca")
    assert "eres el número 3 de la cola" in texts.render("reminder_position", "es", position="3")
    # Out of hours, the note to a citizen who writes again says when, in the same «tu».
    note = texts.render("out_of_hours_reminder", "ca", reopening="dilluns a les 8:00")
    assert note == (
        "Hem rebut el teu missatge. Una persona de l'oficina del 010 et respondrà "
        "dilluns a les 8:00."
    )
    assert "te responderá cuando abramos" in texts.render("out_of_hours_reminder_unknown", "es")


# --------------------------------------------------------------------------- canned responses


def test_canned_responses() -> None:
    data = _load("canned_responses.yaml")
    responses = data["responses"]
    assert len(responses) >= 15
    ids = [r["id"] for r in responses]
    shortcuts = [r["shortcut"] for r in responses]
    assert len(set(ids)) == len(ids)
    assert len(set(shortcuts)) == len(shortcuts)
    for r in responses:
        assert isinstance(r["shortcut"], str)
        assert re.fullmatch(r"[a-z0-9]+", r["shortcut"])
        assert set(r["title"]) == set(LANGS)
        for lang in LANGS:
            text = r["text"][lang]
            assert 10 <= len(text) <= 1000
            assert _fields(text) <= {"operator"}, (r["id"], lang)
            assert text.format(operator="Marta")
            for url in URL.findall(text):
                assert urlsplit(url).scheme == "https"
        assert r["text"]["ca"] != r["text"]["es"]
    for needed in ("salutacio", "demanar_foto", "demanar_ubicacio", "derivat_servei", "comiat"):
        assert needed in ids


# --------------------------------------------------------------------------- environment

REQUIRED_ENV = {
    "CIVICCHAT_DATABASE_URL",
    "MATARO_WA_PHONE_NUMBER_ID",
    "MATARO_WA_ACCESS_TOKEN",
    "MATARO_WA_APP_SECRET",
    "MATARO_WA_VERIFY_TOKEN",
    "CIVICCHAT_GRAPH_API_BASE",
    "CIVICCHAT_GRAPH_API_VERSION",
    "MATARO_TG_BOT_TOKEN",
    "MATARO_TG_SECRET_TOKEN",
    "CIVICCHAT_TELEGRAM_API_BASE",
    "CIVICCHAT_SECRET_KEY",
    "CIVICCHAT_PUBLIC_URL",
}
SECRETS = {
    "MATARO_WA_ACCESS_TOKEN",
    "MATARO_WA_APP_SECRET",
    "MATARO_WA_VERIFY_TOKEN",
    "MATARO_TG_BOT_TOKEN",
    "MATARO_TG_SECRET_TOKEN",
    "CIVICCHAT_SECRET_KEY",
}


def _env_example() -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    uncommented = []
    previous = ""
    for line in (MATARO / ".env.example").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            name, sep, value = stripped.partition("=")
            assert sep, line
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), line
            assert name not in values, f"{name} is given twice"
            values[name] = value
            if not previous.startswith("#"):
                uncommented.append(name)
        previous = stripped
    return values, uncommented


def test_env_example_lists_every_variable_with_a_comment() -> None:
    values, uncommented = _env_example()
    assert set(values) == REQUIRED_ENV
    assert not uncommented, "each variable needs a comment line above it"
    assert values["CIVICCHAT_DATABASE_URL"] == "sqlite+aiosqlite:///var/mataro.db"
    assert values["CIVICCHAT_GRAPH_API_BASE"] == "https://graph.facebook.com"
    assert values["CIVICCHAT_TELEGRAM_API_BASE"] == "https://api.telegram.org"
    assert re.fullmatch(r"v\d+\.\d+", values["CIVICCHAT_GRAPH_API_VERSION"])
    # Telegram allows only these characters in secret_token.
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", values["MATARO_TG_SECRET_TOKEN"])


def test_env_example_holds_no_real_secret() -> None:
    values, _ = _env_example()
    for name in SECRETS:
        assert re.search(r"placeholder|change-me", values[name]), name
    assert set(values["MATARO_WA_PHONE_NUMBER_ID"]) == {"0"}


def test_deployment_doc_mentions_every_variable() -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    values, _ = _env_example()
    missing = [name for name in values if name not in doc]
    assert not missing


# --------------------------------------------------------------------------- docs


def test_getting_started_python_example_prints_what_the_page_says(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    expected = re.search(r"It prints:\n\n```text\n(.*?)```", page, re.DOTALL)
    assert code
    assert expected
    monkeypatch.chdir(ROOT)
    exec(compile(code[1], "docs/getting-started.md", "exec"), {})
    assert capsys.readouterr().out == expected[1]


def test_webhook_paths_and_account_names_in_the_docs_are_those_of_the_config() -> None:
    config = yaml.safe_load((MATARO / "config.yaml").read_text(encoding="utf-8"))
    accounts = {a["name"]: a["channel"] for a in config["accounts"]}
    pages = [MATARO / ".env.example"] + [
        ROOT / "docs" / name for name in ("deployment.md", "operations.md", "privacy.md")
    ]
    seen = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for channel, name in re.findall(
            r"/webhooks/(whatsapp|telegram|webchat)/([a-z0-9_-]+)", text
        ):
            seen.append(name)
            assert accounts.get(name) == channel, f"{page.name}: /webhooks/{channel}/{name}"
        for name in re.findall(r"--account ([a-z0-9_-]+)", text):
            seen.append(name)
            assert name in accounts, f"{page.name}: --account {name}"
    assert {"mataro-wa", "mataro-tg"} <= set(seen)
