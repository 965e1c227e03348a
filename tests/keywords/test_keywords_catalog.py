from __future__ import annotations

from pathlib import Path

import pytest

from civicchat.exceptions import CatalogError, ConfigError
from civicchat.keywords import Catalog, KeywordEngine, load_catalog, parse_catalog

VALID = """\
languages: [ca, es]
keywords:
  - id: bus
    topic: transport
    aliases:
      ca: [bus, autobús, busos]
      es: [autobús, autobuses]
    reply:
      ca: "Línies i horaris del bus urbà: https://example.org"
      es: "Líneas y horarios del bus urbano: https://example.org"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, source="city.yaml")
    return [str(p) for p in info.value.problems]


def test_the_base_shape_loads(small_catalog: Catalog) -> None:
    catalog = parse_catalog(VALID)
    assert catalog.languages == ("ca", "es")
    assert catalog.default_language == "ca"
    bus = catalog.keyword("bus")
    assert bus is not None
    assert bus.aliases["ca"] == ("bus", "autobús", "busos")
    assert bus.reply["es"].startswith("Líneas")
    assert catalog.keyword("nope") is None
    assert small_catalog.topic_order() == ["transport", "services", "weather"]


def test_rich_fields_load(small_catalog: Catalog) -> None:
    grua = small_catalog.keyword("grua")
    assert grua is not None
    assert grua.location is not None
    assert grua.location.latitude == pytest.approx(41.5381)
    assert grua.location.name["es"] == "Depósito municipal"
    deixalleria = small_catalog.keyword("deixalleria")
    assert deixalleria is not None
    assert deixalleria.media is not None
    assert deixalleria.media.kind == "document"
    assert deixalleria.media.filename == "deixalleria.pdf"
    bus = small_catalog.keyword("bus")
    assert bus is not None
    assert [b.keyword for b in bus.buttons] == ["bus_nit"]
    collectiu = small_catalog.keyword("collectiu")
    assert collectiu is not None
    assert collectiu.reply == {
        "ca": "https://example.org/entitats",
        "es": "https://example.org/entitats",
    }


def test_catalog_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_catalog("languages: [ca]\n")


def test_unknown_fields_are_reported_with_line_and_keyword() -> None:
    text = VALID.replace("    topic: transport\n", "    topic: transport\n    colour: red\n")
    assert problems(text) == [
        "city.yaml:5 [keyword bus]: a keyword: unknown field 'colour' (known fields: id, topic, "
        "aliases, reply, title, preview_url, location, media, buttons)"
    ]


def test_unknown_top_level_field() -> None:
    found = problems("lenguajes: [ca]\n" + VALID)
    assert any("city.yaml:1" in p and "unknown field 'lenguajes'" in p for p in found)


def test_a_language_without_a_reply() -> None:
    text = VALID.replace('      es: "Líneas y horarios del bus urbano: https://example.org"\n', "")
    assert problems(text) == ["city.yaml:9 [keyword bus]: 'reply' has no text in 'es'"]


def test_a_template_that_does_not_compile() -> None:
    text = VALID.replace("bus urbano:", "bus urbano {{ name ", 1)
    (found,) = problems(text)
    assert found.startswith("city.yaml:10 [keyword bus]: 'reply' [es]: the reply template does not")


def test_a_template_error_points_at_its_line_in_a_block() -> None:
    text = VALID.replace(
        '      es: "Líneas y horarios del bus urbano: https://example.org"\n',
        "      es: |-\n        Líneas del bus:\n        {% for x in %}\n",
    )
    (found,) = problems(text)
    assert found.startswith("city.yaml:12 [keyword bus]: 'reply' [es]: the reply template does not")


def test_an_unknown_filter_does_not_compile() -> None:
    text = VALID.replace("bus urbano:", "bus urbano {{ now | nosuchfilter }}", 1)
    (found,) = problems(text)
    assert "nosuchfilter" in found


def test_the_same_alias_on_two_keywords_names_both() -> None:
    text = (
        VALID
        + """\
  - id: bus_nit
    topic: transport
    aliases:
      ca: [bus nocturn, "L'AUTOBUS"]
    reply: "El bus de nit."
"""
    )
    (found,) = problems(text)
    assert found.startswith('city.yaml:14 [keyword bus_nit]: alias "L\'AUTOBUS" is also an alias')
    assert "keyword 'bus' ('autobús', line 6)" in found


def test_duplicate_ids_and_keys() -> None:
    text = VALID + VALID.split("keywords:\n", 1)[1]
    found = problems(text)
    assert any("the id is used twice (first at line 3)" in p for p in found)
    found = problems(
        VALID.replace("    topic: transport\n", "    topic: transport\n    topic: x\n")
    )
    assert any("'topic' is given twice" in p for p in found)


def test_every_problem_is_listed_at_once() -> None:
    text = """\
languages: [ca, es]
keywords:
  - id: a
    topic: t
    aliases: {ca: [x], fr: [y]}
    reply: {ca: "{% if %}", es: "ok"}
  - id: b
    aliases: {ca: ["🙂"]}
    reply: {ca: "ok"}
    buttons:
      - keyword: zzz
"""
    found = problems(text)
    assert any(p.startswith("city.yaml:5 [keyword a]") and "'fr'" in p for p in found)
    assert any(p.startswith("city.yaml:6 [keyword a]") and "does not compile" in p for p in found)
    assert any("[keyword b]" in p and "'topic' is missing" in p for p in found)
    assert any("[keyword b]" in p and "no letters or digits" in p for p in found)
    assert any("[keyword b]" in p and "no text in 'es'" in p for p in found)
    assert len(found) >= 5


def test_rich_field_errors() -> None:
    text = VALID + (
        "    location: {latitude: 141, longitude: 2.4}\n"
        "    media: {kind: gif, url: ftp://x, filename: a.pdf}\n"
        "    buttons: [{keyword: bus}, {keyword: a}, {keyword: b}, {keyword: c}]\n"
        "    preview_url: sometimes\n"
    )
    found = "\n".join(problems(text))
    assert "'latitude' must be a number within ±90" in found
    assert "kind must be one of image, document, video, audio" in found
    assert "url must be an http(s) address" in found
    assert "at most 3 buttons" in found
    assert "'preview_url' must be true or false" in found


def test_buttons_must_point_to_other_known_keywords() -> None:
    found = problems(VALID + "    buttons: [{keyword: bus}, {keyword: a}]\n")
    assert found == [
        "city.yaml:11 [keyword bus]: a button cannot point to its own keyword",
        "city.yaml:11 [keyword bus]: a button points to unknown keyword 'a'",
    ]


def test_topics_must_be_declared_when_given() -> None:
    text = "topics:\n  culture: {ca: Cultura, es: Cultura}\n" + VALID
    (found,) = problems(text)
    assert "topic 'transport' is not declared under 'topics'" in found


def test_index_words_are_reserved() -> None:
    text = VALID.replace("[bus, autobús, busos]", "[bus, Paraules Clau]")
    (found,) = problems(text)
    assert "reserved for the keyword index" in found


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[1, 2]",
        "languages: [ca]\nkeywords: {a: 1}\n",
        "languages: ca\nkeywords: []\n",
        "a: [",
        "\t- x",
    ],
)
def test_broken_documents_are_refused_cleanly(text: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(text)
    assert info.value.problems


def test_yaml_syntax_error_has_a_line() -> None:
    (found,) = problems(VALID + "  - id: [unclosed\n")
    assert found.startswith("city.yaml:12")
    assert "not valid YAML" in found


def test_exponential_anchors_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = "\n".join(lines) + "\nlanguages: [ca]\nkeywords: *a8\n"
    with pytest.raises(CatalogError):
        parse_catalog(text)


def test_load_catalog_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path / "missing.yaml")
    assert "cannot read" in str(info.value)


def test_a_broken_file_never_replaces_the_catalog_in_force(tmp_path: Path) -> None:
    path = tmp_path / "city.yaml"
    path.write_text(VALID, encoding="utf-8")
    engine = KeywordEngine(load_catalog(path))
    path.write_text(VALID.replace("    topic: transport\n", ""), encoding="utf-8")
    with pytest.raises(CatalogError):
        engine.reload(load_catalog(path))
    match = engine.match("bus")
    assert match is not None
    assert match.keyword_id == "bus"
    path.write_text(VALID.replace("busos]", "busos, guagua]"), encoding="utf-8")
    engine.reload(load_catalog(path))
    match = engine.match("guagua")
    assert match is not None
    assert match.keyword_id == "bus"


def test_the_mataro_catalog_validates() -> None:
    catalog = load_catalog(Path(__file__).parents[2] / "examples" / "mataro" / "catalog.yaml")
    assert len(catalog.keywords) >= 60


def test_stop_words_of_the_city_are_added() -> None:
    catalog = parse_catalog("stop_words: [Mataró, 'l’ajuntament']\n" + VALID)
    assert {"mataro", "ajuntament", "de"} <= catalog.stop_words
    engine = KeywordEngine(catalog)
    found = engine.match("el bus de Mataró?")
    assert found is not None
    assert found.score == 100  # "mataro" is not an extra word any more


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("    title: {ca: Bus, fr: Bus}\n", "'title': 'fr' is not a catalog language"),
        ("    title: [Bus]\n", "'title' must be a mapping"),
        ("    title: ''\n", "'title' is empty"),
        ("    location: {latitude: 41.5}\n", "'location': 'longitude' is missing"),
        ("    location: {latitude: .nan, longitude: 2}\n", "'latitude' must be a number"),
        ("    location: {latitude: true, longitude: 2}\n", "'latitude' must be a number"),
        ("    location: {latitude: 1, longitude: 2, altitude: 3}\n", "unknown field 'altitude'"),
        ("    media: {url: 'https://x'}\n", "'media': 'kind' is missing"),
        ("    media: {kind: image}\n", "'media': 'url' is missing"),
        (
            "    media: {kind: image, url: 'https://x', filename: a.png}\n",
            "filename is for documents",
        ),
        ("    buttons: [{title: x}]\n", "a button needs 'keyword'"),
        ("    buttons: {keyword: x}\n", "'buttons' must be a list"),
        ("    aliases: {ca: bus}\n", "'aliases' [ca] must be a list"),
        ("    aliases: {ca: []}\n", "the keyword has no alias"),
        ("    aliases: {ca: [[bus]]}\n", "an alias [ca] must be text"),
        ("    reply: [a, b]\n", "'reply' must be a mapping"),
    ],
)
def test_field_errors(snippet: str, message: str) -> None:
    lines = VALID.splitlines(keepends=True)
    if snippet.startswith(("    aliases:", "    reply:")):
        field = snippet.split(":")[0]
        start = next(i for i, line in enumerate(lines) if line.startswith(field + ":"))
        end = start + 1
        while end < len(lines) and lines[end].startswith("      "):
            end += 1
        lines[start:end] = [snippet]
    else:
        lines.append(snippet)
    found = "\n".join(problems("".join(lines)))
    assert message in found


def test_top_level_shapes() -> None:
    assert any("'languages' is missing" in p for p in problems("keywords: []\n"))
    assert any("not a language code" in p for p in problems("languages: [Català]\nkeywords: []\n"))
    assert any("ca is given twice" in p for p in problems("languages: [ca, ca]\nkeywords: []\n"))
    assert any("'keywords' is missing" in p for p in problems("languages: [ca]\n"))
    assert any("'keywords' is empty" in p for p in problems("languages: [ca]\nkeywords: []\n"))
    assert any("'topics' must be a mapping" in p for p in problems("topics: [a]\n" + VALID))
    found = problems("languages: [ca]\nkeywords:\n  - just a string\n")
    assert any("a keyword must be a mapping" in p for p in found)
    found = problems(VALID.replace("  - id: bus", "  - id: 'bus urbà'"))
    assert any("'id' must be a word" in p for p in found)


def test_text_is_taken_as_written_not_as_yaml_numbers_or_booleans() -> None:
    text = VALID.replace("[bus, autobús, busos]", "[bus, 010, on, 1:20, yes]")
    bus = parse_catalog(text).keyword("bus")
    assert bus is not None
    assert bus.aliases["ca"] == ("bus", "010", "on", "1:20", "yes")
    found = problems(VALID.replace("[bus, autobús, busos]", "[bus, ~]"))
    assert any("an alias [ca] must be text" in p for p in found)


# --------------------------------------------------------------------------- texts:


def test_texts_override_the_library_words_per_language() -> None:
    text = VALID.replace(
        "keywords:\n",
        "texts:\n"
        '  did_you_mean: {ca: "Volies dir...?", es: "¿Querías decir...?"}\n'
        '  see_also: "Mira:"\n'
        "keywords:\n",
    )
    catalog = parse_catalog(text)
    assert catalog.text("did_you_mean", "ca") == "Volies dir...?"
    assert catalog.text("did_you_mean", "es") == "¿Querías decir...?"
    assert catalog.text("see_also", "es") == "Mira:"
    # What the catalog does not set stays the library's.
    assert catalog.text("index_header", "es").startswith("*Palabras clave*")
    assert parse_catalog(VALID).text("did_you_mean", "ca") == "Volia dir...?"


def test_texts_problems_have_file_and_line() -> None:
    text = VALID.replace(
        "keywords:\n",
        "texts:\n"
        '  did_you_mean: {ca: "Volies dir...?"}\n'
        '  vegeu: {ca: "x", es: "y"}\n'
        '  see_also: {ca: "Mira:", es: "Mira:", fr: "Voir :"}\n'
        '  index_footer: {ca: "PARAULES CLAU {tema}", es: "PALABRAS CLAVE {topic}"}\n'
        "keywords:\n",
    )
    assert problems(text) == [
        "city.yaml:4: 'texts': unknown field 'vegeu' (known fields: did_you_mean, see_also, "
        "index_header, index_footer, human_hint)",
        "city.yaml:3: 'texts' did_you_mean has no text in es",
        "city.yaml:5: 'texts' see_also: 'fr' is not a catalog language ['ca', 'es']",
        "city.yaml:6: 'texts' index_footer [ca] uses {tema}; fields it may use: {topic} "
        "(write {{ and }} for a literal brace)",
    ]


def test_texts_must_be_a_mapping_of_texts() -> None:
    found = problems(VALID.replace("keywords:\n", "texts: [hola]\nkeywords:\n"))
    assert found == ["city.yaml:2: 'texts' must be a mapping"]
    found = problems(
        VALID.replace("keywords:\n", "texts:\n  see_also: {ca: '', es: x}\nkeywords:\n")
    )
    assert found == ["city.yaml:3: 'texts' see_also [ca] is empty"]


def test_the_mataro_catalog_speaks_as_tu_around_its_answers() -> None:
    catalog = load_catalog(Path(__file__).parents[2] / "examples" / "mataro" / "catalog.yaml")
    assert catalog.text("did_you_mean", "ca") == "Volies dir...?"
    assert catalog.text("did_you_mean", "es") == "¿Querías decir...?"
    assert catalog.text("see_also", "ca") == "Mira també:"
    assert catalog.text("see_also", "es") == "Mira también:"
