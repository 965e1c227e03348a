"""The keyword catalog: a YAML file a city edits, validated completely before it is used.

::

    >>> catalog = parse_catalog('''
    ... languages: [ca, es]
    ... keywords:
    ...   - id: bus
    ...     topic: transport
    ...     aliases: {ca: [bus, autobús], es: [autobús, autobuses]}
    ...     reply: {ca: "Bus urbà: https://example.org/bus", es: "Bus urbano: https://example.org/bus"}
    ... ''')
    >>> catalog.keyword("bus").aliases["es"]
    ('autobús', 'autobuses')

Every problem of a file is collected (file, line, keyword) and raised together as one
:class:`~civicchat.exceptions.CatalogError`; nothing is returned half-loaded. The format is
described in ``docs/catalog.md``.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from civicchat.exceptions import CatalogError, CatalogProblem
from civicchat.keywords.normalize import STOP_WORDS, content_tokens, normalize
from civicchat.keywords.replies import TemplateRenderer
from civicchat.keywords.to_person import TO_PERSON_PHRASES, PersonRequests, phrase_words

__all__ = [
    "DEFAULT_TEXTS",
    "INDEX_PHRASES",
    "Catalog",
    "Keyword",
    "KeywordButton",
    "KeywordLocation",
    "KeywordMedia",
    "alias_key",
    "load_catalog",
    "parse_catalog",
]

#: What citizens type to get the keyword index, per language (normalised).
INDEX_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ca": ("paraules clau", "paraula clau"),
        "es": ("palabras clave", "palabra clave"),
    }
)

#: The library's own words around the answers, per language; a catalog's ``texts:`` overrides
#: them (a city that addresses citizens as «tu» says "Volies dir...?"). ``index_footer`` may
#: use ``{topic}``. ``human_hint`` is empty unless the catalog gives it: the line that ends every
#: keyword answer, telling how to reach a person (its wording depends on the city's service).
DEFAULT_TEXTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "did_you_mean": MappingProxyType({"ca": "Volia dir...?", "es": "¿Quería decir...?"}),
        "see_also": MappingProxyType({"ca": "Vegeu també:", "es": "Ver también:"}),
        "index_header": MappingProxyType(
            {
                "ca": "*Paraules clau*\nEscriu una d'aquestes paraules i et respondrem de seguida:",
                "es": "*Palabras clave*\nEscribe una de estas palabras y te responderemos enseguida:",
            }
        ),
        "index_footer": MappingProxyType(
            {
                "ca": (
                    "Per veure'n només un tema, escriu PARAULES CLAU i el tema "
                    "(per exemple: PARAULES CLAU {topic})."
                ),
                "es": (
                    "Para ver solo un tema, escribe PALABRAS CLAVE y el tema "
                    "(por ejemplo: PALABRAS CLAVE {topic})."
                ),
            }
        ),
        "human_hint": MappingProxyType({"ca": "", "es": ""}),
    }
)
_TEXT_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {"index_footer": frozenset({"topic"})}
)

_MEDIA_KINDS = ("image", "document", "video", "audio")
_MAX_BUTTONS = 3
_MAX_NODES = 500_000  # YAML anchors can expand exponentially; refuse such files
_LANGUAGE = re.compile(r"^[a-z]{2,3}\Z")
_KEYWORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}\Z")
_URL = re.compile(r"^https?://\S+\Z")
_NULL_TAG = "tag:yaml.org,2002:null"

Localized = Mapping[str, str]


def alias_key(alias: str, stop_words: frozenset[str] = STOP_WORDS) -> str:
    """The form two aliases are compared in: normalised, without stop words (when that leaves
    something)."""
    folded = normalize(alias)
    content = content_tokens(folded, stop_words)
    return " ".join(content) if content else folded


@dataclass(frozen=True, slots=True)
class KeywordLocation:
    """A point sent after the reply text."""

    latitude: float
    longitude: float
    name: Localized = field(default_factory=dict)
    address: str | None = None


@dataclass(frozen=True, slots=True)
class KeywordMedia:
    """An image, document, video or audio by URL, sent after the reply text."""

    kind: str
    url: str
    caption: Localized = field(default_factory=dict)
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class KeywordButton:
    """A reply button that answers another keyword of the catalog."""

    keyword: str
    title: Localized = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Keyword:
    """One keyword: its aliases and reply per language, and optional rich content."""

    id: str
    topic: str
    aliases: Mapping[str, tuple[str, ...]]
    reply: Localized
    title: Localized = field(default_factory=dict)
    preview_url: bool | None = None
    location: KeywordLocation | None = None
    media: KeywordMedia | None = None
    buttons: tuple[KeywordButton, ...] = ()
    line: int | None = None

    def label(self, language: str) -> str:
        """The keyword's title in ``language``, else its first alias there, else its id."""
        title = self.title.get(language)
        if title:
            return title
        aliases = self.aliases.get(language) or next((a for a in self.aliases.values() if a), ())
        return aliases[0] if aliases else self.id


@dataclass(frozen=True, slots=True)
class Catalog:
    """A validated keyword catalog. Build it with :func:`load_catalog` or :func:`parse_catalog`.

    ``to_person`` holds the city's own phrases that ask for a person, per language, added to
    :data:`~civicchat.keywords.to_person.TO_PERSON_PHRASES`.
    """

    languages: tuple[str, ...]
    keywords: tuple[Keyword, ...]
    topics: Mapping[str, Localized] = field(default_factory=dict)
    stop_words: frozenset[str] = STOP_WORDS
    source: str = "<string>"
    texts: Mapping[str, Localized] = field(default_factory=dict)
    to_person: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    _by_id: Mapping[str, Keyword] = field(default_factory=dict, repr=False, compare=False)

    @property
    def default_language(self) -> str:
        """The first language of the catalog: replies fall back to it."""
        return self.languages[0]

    def keyword(self, keyword_id: str) -> Keyword | None:
        """The keyword with this id, or ``None``."""
        return self._by_id.get(keyword_id)

    def topic_name(self, topic: str, language: str) -> str:
        """The display name of ``topic`` in ``language`` (its id, capitalised, if none)."""
        names = self.topics.get(topic, {})
        return names.get(language) or names.get(self.default_language) or topic.capitalize()

    def text(self, key: str, language: str) -> str:
        """The library text ``key`` (see :data:`DEFAULT_TEXTS`) in ``language``: the catalog's
        own ``texts:`` first, then the library's, then either in the default language.

        Raises ``KeyError`` for a key that is not in :data:`DEFAULT_TEXTS`.
        """
        default = DEFAULT_TEXTS[key]
        own = self.texts.get(key, {})
        return (
            own.get(language)
            or default.get(language)
            or own.get(self.default_language)
            or default.get(self.default_language)
            or default["ca"]
        )

    def topic_order(self) -> list[str]:
        """Topics in display order: those declared under ``topics`` first, then in file order."""
        order = list(self.topics)
        for kw in self.keywords:
            if kw.topic not in order:
                order.append(kw.topic)
        return order


# --------------------------------------------------------------------------- loading


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file.

    Raises :class:`~civicchat.exceptions.CatalogError` listing every problem found (file, line,
    keyword), also when the file cannot be read.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([CatalogProblem(source, None, None, f"cannot read: {exc}")]) from None
    return parse_catalog(text, source=source)


def parse_catalog(text: str, *, source: str = "<string>") -> Catalog:
    """Validate catalog YAML ``text``; ``source`` names it in error messages."""
    return _Parser(source).parse(text)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[CatalogProblem] = []
        self.renderer = TemplateRenderer()
        self._constructor = yaml.constructor.SafeConstructor()
        self._nodes = 0
        self._alias_lines: dict[tuple[str | None, str], int] = {}
        self._button_lines: dict[tuple[str | None, str], int] = {}

    # ----------------------------------------------------------------- reporting and helpers

    def problem(self, node: yaml.Node | int | None, keyword: str | None, message: str) -> None:
        line = node if isinstance(node, int) or node is None else _line(node)
        self.problems.append(CatalogProblem(self.source, line, keyword, message))

    def scalar(self, node: yaml.Node) -> object:
        self._nodes += 1
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError:
                return node.value
        return node

    def mapping(
        self, node: yaml.Node, kw: str | None, what: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """A mapping's entries by key, reporting duplicates and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, kw, f"{what} must be a mapping")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            self._nodes += 1
            if self._nodes > _MAX_NODES:
                raise _TooLarge
            key = self.scalar(key_node)
            if not isinstance(key, str | int | bool) or isinstance(key, bool):
                self.problem(key_node, kw, f"{what}: keys must be plain words")
                continue
            key = str(key)
            if key in out:
                self.problem(key_node, kw, f"{what}: '{key}' is given twice")
                continue
            if allowed is not None and key not in allowed:
                self.problem(
                    key_node,
                    kw,
                    f"{what}: unknown field '{key}' (known fields: {', '.join(allowed)})",
                )
                continue
            out[key] = (key_node, value_node)
        return out

    def sequence(self, node: yaml.Node, kw: str | None, what: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, kw, f"{what} must be a list")
            return None
        self._nodes += len(node.value)
        if self._nodes > _MAX_NODES:
            raise _TooLarge
        return list(node.value)

    def string(self, node: yaml.Node, kw: str | None, what: str) -> str | None:
        # Text is taken as written: YAML 1.1 would read the alias 010 as the number 8, "on"
        # (Catalan for "where") as true and 1:20 as 80.
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL_TAG:
            self.problem(node, kw, f"{what} must be text")
            return None
        self._nodes += 1
        text = str(node.value).strip()
        if not text:
            self.problem(node, kw, f"{what} is empty")
            return None
        return text

    def localized(
        self, node: yaml.Node, kw: str | None, what: str, languages: tuple[str, ...]
    ) -> dict[str, str] | None:
        """A localised text: one string for every language, or ``{ca: ..., es: ...}``."""
        if isinstance(node, yaml.ScalarNode):
            text = self.string(node, kw, what)
            return None if text is None else dict.fromkeys(languages, text)
        entries = self.mapping(node, kw, what)
        if entries is None:
            return None
        out: dict[str, str] = {}
        for lang, (key_node, value_node) in entries.items():
            if lang not in languages:
                self.problem(
                    key_node, kw, f"{what}: '{lang}' is not a catalog language {list(languages)}"
                )
                continue
            text = self.string(value_node, kw, f"{what} [{lang}]")
            if text is not None:
                out[lang] = text
        return out

    # ----------------------------------------------------------------- the document

    def parse(self, text: str) -> Catalog:
        try:
            catalog = self._parse(text)
        except _TooLarge:
            self.problems.append(
                CatalogProblem(self.source, None, None, "the file is too large or too nested")
            )
            catalog = None
        if self.problems or catalog is None:
            raise CatalogError(self.problems)
        return catalog

    def _parse(self, text: str) -> Catalog | None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            root = yaml.compose(text, Loader=loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            self.problem(line, None, f"not valid YAML: {exc.problem or exc}")
            return None
        except (yaml.YAMLError, ValueError) as exc:
            self.problem(None, None, f"not valid YAML: {exc}")
            return None
        if root is None:
            self.problem(None, None, "the file is empty")
            return None
        top = self.mapping(
            root,
            None,
            "the catalog",
            ("languages", "topics", "texts", "keywords", "stop_words", "to_person"),
        )
        if top is None:
            return None
        languages = self._languages(top, root)
        if languages is None:
            return None
        topics = self._topics(top, languages)
        stop_words = self._stop_words(top)
        texts = self._texts(top, languages)
        to_person = self._to_person(top, languages, stop_words)
        if "keywords" not in top:
            self.problem(root, None, "'keywords' is missing")
            return None
        items = self.sequence(top["keywords"][1], None, "'keywords'")
        if items is None:
            return None
        if not items:
            self.problem(top["keywords"][1], None, "'keywords' is empty")
        keywords: list[Keyword] = []
        for item in items:
            kw = self._keyword(item, languages, topics)
            if kw is not None:
                keywords.append(kw)
        by_id = self._check_ids(keywords)
        self._check_buttons(keywords, by_id)
        self._check_aliases(keywords, stop_words)
        self._check_to_person(keywords, stop_words, to_person)
        if self.problems:
            return None
        return Catalog(
            languages=languages,
            keywords=tuple(keywords),
            topics=MappingProxyType(topics or {}),
            stop_words=stop_words,
            source=self.source,
            texts=MappingProxyType(texts),
            to_person=MappingProxyType(to_person),
            _by_id=MappingProxyType(by_id),
        )

    def _languages(
        self, top: dict[str, tuple[yaml.Node, yaml.Node]], root: yaml.Node
    ) -> tuple[str, ...] | None:
        if "languages" not in top:
            self.problem(root, None, "'languages' is missing (for example: languages: [ca, es])")
            return None
        nodes = self.sequence(top["languages"][1], None, "'languages'")
        if nodes is None:
            return None
        languages: list[str] = []
        for node in nodes:
            value = self.scalar(node)
            if not isinstance(value, str) or not _LANGUAGE.match(value):
                self.problem(node, None, f"'languages': {value!r} is not a language code like ca")
            elif value in languages:
                self.problem(node, None, f"'languages': {value} is given twice")
            else:
                languages.append(value)
        if not languages:
            self.problem(top["languages"][1], None, "'languages' needs at least one language")
            return None
        return tuple(languages)

    def _topics(
        self, top: dict[str, tuple[yaml.Node, yaml.Node]], languages: tuple[str, ...]
    ) -> dict[str, dict[str, str]] | None:
        if "topics" not in top:
            return None
        entries = self.mapping(top["topics"][1], None, "'topics'")
        if entries is None:
            return {}
        topics: dict[str, dict[str, str]] = {}
        for topic, (_, value_node) in entries.items():
            names = self.localized(value_node, None, f"topic '{topic}'", languages)
            topics[topic] = names or {}
        return topics

    def _texts(
        self, top: dict[str, tuple[yaml.Node, yaml.Node]], languages: tuple[str, ...]
    ) -> dict[str, Localized]:
        if "texts" not in top:
            return {}
        entries = self.mapping(top["texts"][1], None, "'texts'", tuple(DEFAULT_TEXTS))
        texts: dict[str, Localized] = {}
        for key, (_, value_node) in (entries or {}).items():
            what = f"'texts' {key}"
            found = self.localized(value_node, None, what, languages)
            if found is None:
                continue
            allowed = _TEXT_FIELDS.get(key, frozenset())
            lang_nodes: dict[str, yaml.Node] = {}
            if isinstance(value_node, yaml.MappingNode):
                lang_nodes = {str(k.value): v for k, v in value_node.value}
                missing = [lang for lang in languages if lang not in lang_nodes]
                if missing:
                    self.problem(value_node, None, f"{what} has no text in {', '.join(missing)}")
            for lang, text in found.items():
                node = lang_nodes.get(lang, value_node)
                try:
                    names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
                except ValueError as exc:
                    self.problem(node, None, f"{what} [{lang}]: {exc}")
                    continue
                if not names <= allowed:
                    unknown = ", ".join("{" + n + "}" for n in sorted(names - allowed))
                    usable = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
                    self.problem(
                        node,
                        None,
                        f"{what} [{lang}] uses {unknown}; fields it may use: {usable} "
                        "(write {{ and }} for a literal brace)",
                    )
            texts[key] = MappingProxyType(found)
        return texts

    def _to_person(
        self,
        top: dict[str, tuple[yaml.Node, yaml.Node]],
        languages: tuple[str, ...],
        stop_words: frozenset[str],
    ) -> dict[str, tuple[str, ...]]:
        if "to_person" not in top:
            return {}
        by_lang = self.mapping(top["to_person"][1], None, "'to_person'")
        out: dict[str, tuple[str, ...]] = {}
        for lang, (key_node, list_node) in (by_lang or {}).items():
            if lang not in languages:
                self.problem(
                    key_node,
                    None,
                    f"'to_person': '{lang}' is not a catalog language {list(languages)}",
                )
                continue
            found: list[str] = []
            for node in self.sequence(list_node, None, f"'to_person' [{lang}]") or ():
                phrase = self.string(node, None, f"a 'to_person' phrase [{lang}]")
                if phrase is None:
                    continue
                if not phrase_words(phrase, stop_words):
                    self.problem(
                        node,
                        None,
                        f"'to_person' phrase {phrase!r} has only stop words, so it would match "
                        'nothing; add the words that ask for a person ("parlar amb una persona")',
                    )
                    continue
                if phrase not in found:
                    found.append(phrase)
            out[lang] = tuple(found)
        return out

    def _check_to_person(
        self,
        keywords: list[Keyword],
        stop_words: frozenset[str],
        to_person: Mapping[str, tuple[str, ...]],
    ) -> None:
        """An alias holding a phrase that asks for a person would never be answered."""
        requests = PersonRequests(TO_PERSON_PHRASES, to_person, stop_words=stop_words)
        for kw in keywords:
            for aliases in kw.aliases.values():
                for alias in aliases:
                    phrase = requests.find_in(content_tokens(normalize(alias), stop_words))
                    if phrase is not None:
                        self.problem(
                            self._alias_lines.get((kw.id, alias), kw.line),
                            kw.id,
                            f"alias {alias!r} asks for a person ({phrase!r}, see 'to_person'), "
                            "so it would never be answered; reword it",
                        )

    def _stop_words(self, top: dict[str, tuple[yaml.Node, yaml.Node]]) -> frozenset[str]:
        if "stop_words" not in top:
            return STOP_WORDS
        nodes = self.sequence(top["stop_words"][1], None, "'stop_words'")
        extra: set[str] = set()
        for node in nodes or ():
            word = self.string(node, None, "a stop word")
            if word is not None:
                extra.update(normalize(word).split())
        return STOP_WORDS | extra

    # ----------------------------------------------------------------- one keyword

    _KEYWORD_FIELDS = (
        "id",
        "topic",
        "aliases",
        "reply",
        "title",
        "preview_url",
        "location",
        "media",
        "buttons",
    )

    def _keyword(
        self,
        node: yaml.Node,
        languages: tuple[str, ...],
        topics: dict[str, dict[str, str]] | None,
    ) -> Keyword | None:
        before = len(self.problems)
        kw_id: str | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if self.scalar(key_node) == "id" and isinstance(value_node, yaml.ScalarNode):
                    kw_id = str(value_node.value).strip() or None
        entries = self.mapping(node, kw_id, "a keyword", self._KEYWORD_FIELDS)
        if entries is None:
            return None
        for required in ("id", "topic", "aliases", "reply"):
            if required not in entries:
                self.problem(node, kw_id, f"'{required}' is missing")
        if "id" in entries and (kw_id is None or not _KEYWORD_ID.match(kw_id)):
            self.problem(
                entries["id"][1],
                kw_id,
                "'id' must be a word of letters, digits, '_', '-' or '.' (at most 100)",
            )
        topic = self.string(entries["topic"][1], kw_id, "'topic'") if "topic" in entries else None
        if topic is not None and topics is not None and topic not in topics:
            self.problem(
                entries["topic"][1],
                kw_id,
                f"topic '{topic}' is not declared under 'topics' (declared: {', '.join(topics)})",
            )
        aliases = self._aliases(entries, kw_id, languages)
        reply = self._reply(entries, kw_id, languages)
        title: dict[str, str] = {}
        if "title" in entries:
            title = self.localized(entries["title"][1], kw_id, "'title'", languages) or {}
        preview: bool | None = None
        if "preview_url" in entries:
            value = self.scalar(entries["preview_url"][1])
            if not isinstance(value, bool):
                self.problem(
                    entries["preview_url"][1], kw_id, "'preview_url' must be true or false"
                )
            else:
                preview = value
        location = (
            self._location(entries["location"][1], kw_id, languages)
            if "location" in entries
            else None
        )
        media = self._media(entries["media"][1], kw_id, languages) if "media" in entries else None
        buttons = (
            self._buttons(entries["buttons"][1], kw_id, languages) if "buttons" in entries else ()
        )
        if len(self.problems) > before or kw_id is None or topic is None:
            return None
        return Keyword(
            id=kw_id,
            topic=topic,
            aliases=MappingProxyType(aliases),
            reply=MappingProxyType(reply),
            title=MappingProxyType(title),
            preview_url=preview,
            location=location,
            media=media,
            buttons=buttons,
            line=_line(node),
        )

    def _aliases(
        self,
        entries: dict[str, tuple[yaml.Node, yaml.Node]],
        kw: str | None,
        languages: tuple[str, ...],
    ) -> dict[str, tuple[str, ...]]:
        aliases: dict[str, tuple[str, ...]] = {}
        if "aliases" not in entries:
            return aliases
        by_lang = self.mapping(entries["aliases"][1], kw, "'aliases'")
        if by_lang is None:
            return aliases
        for lang, (key_node, list_node) in by_lang.items():
            if lang not in languages:
                self.problem(
                    key_node, kw, f"'aliases': '{lang}' is not a catalog language {list(languages)}"
                )
                continue
            nodes = self.sequence(list_node, kw, f"'aliases' [{lang}]")
            if nodes is None:
                continue
            found: list[str] = []
            for alias_node in nodes:
                alias = self.string(alias_node, kw, f"an alias [{lang}]")
                if alias is None:
                    continue
                if not normalize(alias):
                    self.problem(
                        alias_node, kw, f"alias {alias!r} has no letters or digits to match"
                    )
                    continue
                if alias not in found:
                    found.append(alias)
                    self._alias_lines.setdefault((kw, alias), _line(alias_node))
            aliases[lang] = tuple(found)
        if not any(aliases.values()):
            self.problem(entries["aliases"][1], kw, "the keyword has no alias")
        return aliases

    def _reply(
        self,
        entries: dict[str, tuple[yaml.Node, yaml.Node]],
        kw: str | None,
        languages: tuple[str, ...],
    ) -> dict[str, str]:
        if "reply" not in entries:
            return {}
        node = entries["reply"][1]
        reply = self.localized(node, kw, "'reply'", languages) or {}
        if isinstance(node, yaml.MappingNode) or reply:
            for lang in languages:
                if lang not in reply and isinstance(node, yaml.MappingNode):
                    self.problem(node, kw, f"'reply' has no text in '{lang}'")
        reply_nodes: dict[str, yaml.Node] = {}
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                reply_nodes[str(self.scalar(key_node))] = value_node
        for lang, source in reply.items():
            error = self.renderer.check(source)
            if error is not None:
                message, template_line = error
                value_node = reply_nodes.get(lang, node)
                line = _line(value_node)
                if template_line is not None:
                    # A block scalar (| or >) starts on the line after its indicator.
                    block = getattr(value_node, "style", None) in ("|", ">")
                    line += template_line - (0 if block else 1)
                self.problem(line, kw, f"'reply' [{lang}]: {message}")
        return reply

    def _location(
        self, node: yaml.Node, kw: str | None, languages: tuple[str, ...]
    ) -> KeywordLocation | None:
        entries = self.mapping(node, kw, "'location'", ("latitude", "longitude", "name", "address"))
        if entries is None:
            return None
        coords: dict[str, float] = {}
        for axis, limit in (("latitude", 90.0), ("longitude", 180.0)):
            if axis not in entries:
                self.problem(node, kw, f"'location': '{axis}' is missing")
                continue
            value = self.scalar(entries[axis][1])
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or abs(value) > limit
            ):
                self.problem(
                    entries[axis][1], kw, f"'location': '{axis}' must be a number within ±{limit:g}"
                )
                continue
            coords[axis] = float(value)
        name: dict[str, str] = {}
        if "name" in entries:
            name = self.localized(entries["name"][1], kw, "'location' name", languages) or {}
        address = (
            self.string(entries["address"][1], kw, "'location' address")
            if "address" in entries
            else None
        )
        if len(coords) != 2:
            return None
        return KeywordLocation(
            coords["latitude"], coords["longitude"], MappingProxyType(name), address
        )

    def _media(
        self, node: yaml.Node, kw: str | None, languages: tuple[str, ...]
    ) -> KeywordMedia | None:
        entries = self.mapping(node, kw, "'media'", ("kind", "url", "caption", "filename"))
        if entries is None:
            return None
        kind = self.string(entries["kind"][1], kw, "'media' kind") if "kind" in entries else None
        if "kind" not in entries:
            self.problem(node, kw, f"'media': 'kind' is missing ({' | '.join(_MEDIA_KINDS)})")
        elif kind is not None and kind not in _MEDIA_KINDS:
            self.problem(
                entries["kind"][1], kw, f"'media': kind must be one of {', '.join(_MEDIA_KINDS)}"
            )
            kind = None
        url = self.string(entries["url"][1], kw, "'media' url") if "url" in entries else None
        if "url" not in entries:
            self.problem(node, kw, "'media': 'url' is missing")
        elif url is not None and not _URL.match(url):
            self.problem(entries["url"][1], kw, "'media': url must be an http(s) address")
            url = None
        caption: dict[str, str] = {}
        if "caption" in entries:
            caption = self.localized(entries["caption"][1], kw, "'media' caption", languages) or {}
        filename: str | None = None
        if "filename" in entries:
            filename = self.string(entries["filename"][1], kw, "'media' filename")
            if kind is not None and kind != "document":
                self.problem(entries["filename"][1], kw, "'media': filename is for documents only")
        if kind is None or url is None:
            return None
        return KeywordMedia(kind, url, MappingProxyType(caption), filename)

    def _buttons(
        self, node: yaml.Node, kw: str | None, languages: tuple[str, ...]
    ) -> tuple[KeywordButton, ...]:
        nodes = self.sequence(node, kw, "'buttons'")
        if nodes is None:
            return ()
        if len(nodes) > _MAX_BUTTONS:
            self.problem(node, kw, f"'buttons': at most {_MAX_BUTTONS} buttons")
        buttons: list[KeywordButton] = []
        for button_node in nodes:
            entries = self.mapping(button_node, kw, "a button", ("keyword", "title"))
            if entries is None:
                continue
            if "keyword" not in entries:
                self.problem(button_node, kw, "a button needs 'keyword'")
                continue
            target = self.string(entries["keyword"][1], kw, "a button's keyword")
            title: dict[str, str] = {}
            if "title" in entries:
                title = self.localized(entries["title"][1], kw, "a button's title", languages) or {}
            if target is not None:
                buttons.append(KeywordButton(target, MappingProxyType(title)))
                self._button_lines[(kw, target)] = _line(button_node)
        return tuple(buttons)

    # ----------------------------------------------------------------- across keywords

    def _check_ids(self, keywords: list[Keyword]) -> dict[str, Keyword]:
        by_id: dict[str, Keyword] = {}
        for kw in keywords:
            if kw.id in by_id:
                self.problem(
                    kw.line, kw.id, f"the id is used twice (first at line {by_id[kw.id].line})"
                )
            else:
                by_id[kw.id] = kw
        return by_id

    def _check_buttons(self, keywords: list[Keyword], by_id: dict[str, Keyword]) -> None:
        for kw in keywords:
            for button in kw.buttons:
                line = self._button_lines.get((kw.id, button.keyword), kw.line)
                if button.keyword == kw.id:
                    self.problem(line, kw.id, "a button cannot point to its own keyword")
                elif button.keyword not in by_id:
                    self.problem(
                        line, kw.id, f"a button points to unknown keyword '{button.keyword}'"
                    )

    def _check_aliases(self, keywords: list[Keyword], stop_words: frozenset[str]) -> None:
        owner: dict[str, tuple[str, str, int | None]] = {}
        index_keys = {phrase: lang for lang, phrases in INDEX_PHRASES.items() for phrase in phrases}
        for kw in keywords:
            seen_here: set[str] = set()
            for aliases in kw.aliases.values():
                for alias in aliases:
                    key = alias_key(alias, stop_words)
                    if key in seen_here:
                        continue
                    seen_here.add(key)
                    line = self._alias_lines.get((kw.id, alias), kw.line)
                    if key in index_keys:
                        self.problem(
                            line,
                            kw.id,
                            f"alias {alias!r} is reserved for the keyword index",
                        )
                        continue
                    if key in owner:
                        other_id, other_alias, other_line = owner[key]
                        self.problem(
                            line,
                            kw.id,
                            f"alias {alias!r} is also an alias of keyword '{other_id}' "
                            f"({other_alias!r}, line {other_line}); an alias belongs to one keyword",
                        )
                        continue
                    owner[key] = (kw.id, alias, line)


class _TooLarge(Exception):
    pass
