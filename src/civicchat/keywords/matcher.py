"""Finding the aliases a message asks for: exact first, then inflections, then typos.

The catalog is normalised once into dictionaries; a message is normalised, stripped of stop words
and looked up whole, then as word n-grams. Only words that no dictionary knows go to rapidfuzz,
against the few catalog words of a similar length that share their first two, last two, or first
and last letters, with a tolerance that grows with the word's length. Dictionary lookups cost the
same whatever the size of the catalog, so a message costs microseconds.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import OSA

from civicchat.keywords.catalog import Catalog
from civicchat.keywords.language import typical_words
from civicchat.keywords.normalize import content_tokens, normalize

__all__ = ["AliasIndex", "Candidate", "singular_forms", "telling_words", "typo_tolerance"]

#: Score lost for each message word that the alias does not cover.
EXTRA_WORD_PENALTY = 5.0
#: A message with more words than its alias plus this many is not a keyword request (a person
#: should read it), even when it mentions an alias.
MAX_EXTRA_WORDS = 3
#: The same for an alias of one word ("perro", "ayuntamiento"): one common word with three more
#: around it is a sentence about something ("mi vecino tiene un perro que ladra"), not a request.
MAX_EXTRA_WORDS_SINGLE = 2
_INFLECTION_SCORE = 96.0
_FUZZY_CAP = 92.0
_OPTIONS_PER_WORD = 2


def typo_tolerance(length: int) -> int:
    """How many edits a catalog word of ``length`` letters tolerates.

    Short words need an exact match ("tres" is not "tren", "grup" is not "grua"), long words
    forgive more.
    """
    if length <= 4:
        return 0
    if length <= 7:
        return 1
    if length <= 11:
        return 2
    return 3


def singular_forms(word: str) -> set[str]:
    """The possible singulars of a Catalan or Spanish plural (normalised, no accents).

    Over-generating is harmless: a form only counts when it is a catalog word.
    """
    forms: set[str] = set()
    n = len(word)
    if n < 4 or not word.endswith("s"):
        return forms
    forms.add(word[:-1])  # carrers -> carrer, autobusos -> autobuso
    if word.endswith("es") and n >= 5:
        stem = word[:-2]
        forms.add(stem)  # autobuses -> autobus, multes -> mult
        forms.add(stem + "a")  # deixalleries -> deixalleria, multes -> multa
        if stem.endswith("qu"):
            forms.add(stem[:-2] + "ca")  # biblioteques -> biblioteca
        elif stem.endswith("gu"):
            forms.add(stem[:-2] + "ga")  # botigues -> botiga
        elif stem.endswith("g"):
            forms.add(stem[:-1] + "ja")  # platges -> platja
        elif stem.endswith("c"):
            forms.add(stem[:-1] + "z")  # luces -> luz
            forms.add(stem[:-1] + "ca")  # places -> plaça
    elif word.endswith("os") and n >= 5:
        forms.add(word[:-2])  # busos -> bus, cossos -> cos
    elif word.endswith("ns") and n >= 5:
        forms.add(word[:-2])  # plens -> ple, jardins -> jardi, camins -> cami
    return {f for f in forms if len(f) >= 3}


#: A word and its counterpart in another language share at least this many first letters
#: ("busos" / "bus", "bombers" / "bomberos", "urgent" / "urgencia").
_COGNATE_PREFIX = 3
_MIN_TELLING_LENGTH = 4  # "ibi", "zbe", "oac", "r1": acronyms are not words of one language
_NOTHING: frozenset[str] = frozenset()  # one object: an empty frozenset() is a new one each time


def telling_words(
    tokens: Iterable[str],
    language: str,
    word_languages: Mapping[str, Iterable[str]],
    keyword_words: Mapping[str, Iterable[str]],
) -> frozenset[str]:
    """The words of an alias listed under ``language`` only that show that language.

    A word shows its language when no alias of another language uses it (``word_languages``:
    each catalog word's languages), it is a word (letters only, four or more: not "112", "r1",
    "ibi"), and one of:

    - it is one of the words only that language writes (``quin``, ``horari``; see
      :mod:`~civicchat.keywords.language`);
    - the same keyword's aliases in another language spell it differently (``keyword_words``:
      the keyword's words per language): "bombers" / "bomberos", "urgent" / "urgencia";
    - it is a plural whose singular the keyword's aliases use ("busos", "trens" / "bus",
      "tren"): Catalan and Spanish make plurals differently.

    A name or acronym listed under one language only ("renfe") shows nothing.

    >>> words = {"busos": {"ca"}, "renfe": {"ca"}, "112": {"ca"}}
    >>> sorted(telling_words(["busos"], "ca", words, {"ca": ["bus", "busos"]}))
    ['busos']
    >>> sorted(telling_words(["renfe", "112"], "ca", words, {"ca": ["tren"], "es": ["tren"]}))
    []
    """
    candidates = [
        t
        for t in tokens
        if len(t) >= _MIN_TELLING_LENGTH
        and t.isalpha()
        and set(word_languages.get(t, ())) == {language}
    ]
    if not candidates:
        return _NOTHING
    return _Counterparts(keyword_words).telling(candidates, language)


class _Counterparts:
    """One keyword's words per language, for :func:`telling_words` (built once per keyword)."""

    __slots__ = ("_others", "_prefixes", "_words")

    def __init__(self, keyword_words: Mapping[str, Iterable[str]]) -> None:
        self._words: set[str] = set()
        self._prefixes: dict[str, set[str]] = {}  # language -> first letters of its words
        for lang, words in keyword_words.items():
            for word in words:
                if word.isalpha():
                    self._words.add(word)
                    self._prefixes.setdefault(lang, set()).add(word[:_COGNATE_PREFIX])
        self._others: dict[str, set[str]] = {}

    def telling(self, candidates: Iterable[str], language: str) -> frozenset[str]:
        """Which ``candidates`` (words only ``language``'s aliases use) show ``language``."""
        own = typical_words(language)
        # A candidate is in no other language's aliases, so another language's word with its
        # first letters is a different spelling of it.
        others = self._others.get(language)
        if others is None:
            others = set().union(*(p for lang, p in self._prefixes.items() if lang != language))
            self._others[language] = others
        return frozenset(
            t
            for t in candidates
            if t in own
            or t[:_COGNATE_PREFIX] in others
            or (t.endswith("s") and not singular_forms(t).isdisjoint(self._words))
        )


@dataclass(frozen=True, slots=True)
class _Alias:
    keyword: str
    text: str
    languages: frozenset[str]
    tokens: tuple[str, ...]
    telling: frozenset[str]
    telling_words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One keyword a message may ask for, through one of its aliases.

    ``alias_languages`` are the languages the alias is listed under; ``telling_languages`` is
    that language when the alias is listed under one only and the message holds, as written, a
    word of it that shows the language (see :func:`telling_words`): "busos", not "bus" (also in
    Spanish aliases: "horario bus"), not "112", "ibi" or "renfe" (the same in every language),
    not a typo ("urgente" reaching "urgent"). Empty otherwise.
    """

    keyword_id: str
    alias: str
    alias_languages: frozenset[str]
    score: float
    exact: bool
    telling_languages: frozenset[str] = frozenset()


class AliasIndex:
    """The catalog's aliases, normalised once, and the search over them.

    Build it once per catalog (it is immutable); :meth:`search` is safe from any thread.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.stop_words = catalog.stop_words
        merged: dict[tuple[str, str], tuple[str, set[str], tuple[str, ...]]] = {}
        for kw in catalog.keywords:
            for lang, aliases in kw.aliases.items():
                for alias in aliases:
                    folded = normalize(alias)
                    slot = merged.get((kw.id, folded))
                    if slot is None:
                        tokens = tuple(content_tokens(folded, self.stop_words))
                        merged[(kw.id, folded)] = (alias, {lang}, tokens)
                    else:
                        slot[1].add(lang)
        word_languages: dict[str, set[str]] = defaultdict(set)
        # keyword id -> language -> the words of its aliases in that language
        keyword_words: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for (kw_id, _), (_, langs, tokens) in merged.items():
            for token in tokens:
                word_languages[token].update(langs)
            for lang in langs:
                keyword_words[kw_id][lang].update(tokens)
        # key -> keyword id -> the first alias of that keyword with that key
        whole: dict[str, dict[str, _Alias]] = defaultdict(dict)
        phrases: dict[tuple[str, ...], dict[str, _Alias]] = defaultdict(dict)
        vocab: set[str] = set()
        shared: dict[frozenset[str], frozenset[str]] = {}  # one object per set of languages
        counterparts: dict[str, _Counterparts] = {}
        for (kw_id, folded), (text, langs, tokens) in merged.items():
            languages = shared.setdefault(frozenset(langs), frozenset(langs))
            telling = _NOTHING
            words = _NOTHING
            if len(langs) == 1:
                (lang,) = langs
                candidates = [
                    t
                    for t in tokens
                    if len(t) >= _MIN_TELLING_LENGTH and t.isalpha() and word_languages[t] == langs
                ]
                if candidates:
                    found = counterparts.get(kw_id)
                    if found is None:
                        found = counterparts[kw_id] = _Counterparts(keyword_words[kw_id])
                    words = found.telling(candidates, lang)
                telling = languages if words else _NOTHING
            entry = _Alias(kw_id, text, languages, tokens, telling, tuple(sorted(words)))
            whole[folded].setdefault(kw_id, entry)
            if tokens:
                whole[" ".join(tokens)].setdefault(kw_id, entry)
                phrases[tokens].setdefault(kw_id, entry)
                vocab.update(tokens)
        self._whole = {k: tuple(v.values()) for k, v in whole.items()}
        self._phrases = {k: tuple(v.values()) for k, v in phrases.items()}
        self.max_alias_words = max((len(k) for k in self._phrases), default=1)
        self._vocab = frozenset(vocab)
        forms: dict[str, set[str]] = defaultdict(set)
        fuzzy_targets: list[str] = []
        # Sorted: the fuzzy pre-filter keeps the first of equally close words, and a set's
        # order changes with PYTHONHASHSEED, so a typo could match another keyword after a restart.
        for word in sorted(vocab):
            singulars = singular_forms(word)
            # A catalog plural whose singular is also a catalog word is reached through that
            # singular. Its other guessed singulars would be wrong ("trenes" is not the plural
            # of "trena") and fuzzy matching it would let "busco" reach "busos".
            if singulars & vocab:
                continue
            for form in singulars:
                forms[form].add(word)
            if not word.isdigit():
                fuzzy_targets.append(word)
        self._forms = {k: tuple(sorted(v)) for k, v in forms.items()}
        self._buckets = _Buckets(fuzzy_targets)

    # ----------------------------------------------------------------- search

    def search(self, text: str) -> list[Candidate]:
        """Candidates for ``text``, best first, one per keyword (empty when none)."""
        folded = normalize(text)
        if not folded:
            return []
        tokens = folded.split()
        return self.search_tokens(folded, tokens)

    def search_tokens(self, folded: str, tokens: list[str]) -> list[Candidate]:
        """:meth:`search` for text already normalised (``folded``) and split (``tokens``)."""
        whole = self._whole.get(folded)
        content = content_tokens(folded, self.stop_words)
        if whole is None and content:
            whole = self._whole.get(" ".join(content))
        written = frozenset(tokens)
        if whole:
            return [
                Candidate(a.keyword, a.text, a.languages, 100.0, True, _telling(a, written))
                for a in whole
            ]
        n = len(content)
        if n == 0 or n > self.max_alias_words + MAX_EXTRA_WORDS:
            return []
        options = [self._word_options(t) for t in content]
        best: dict[str, Candidate] = {}
        for start in range(n):
            for length in range(1, min(self.max_alias_words, n - start) + 1):
                window = options[start : start + length]
                if not window[-1]:
                    break
                extra = n - length
                if extra > (MAX_EXTRA_WORDS_SINGLE if length == 1 else MAX_EXTRA_WORDS):
                    continue
                for combo in itertools.product(*window):
                    aliases = self._phrases.get(tuple(word for word, _ in combo))
                    if not aliases:
                        continue
                    score = sum(s for _, s in combo) / length - EXTRA_WORD_PENALTY * extra
                    for alias in aliases:
                        known = best.get(alias.keyword)
                        if known is None or score > known.score:
                            best[alias.keyword] = Candidate(
                                alias.keyword,
                                alias.text,
                                alias.languages,
                                score,
                                False,
                                _telling(alias, written),
                            )
        return sorted(best.values(), key=lambda c: (-c.score, c.keyword_id))

    def _word_options(self, token: str) -> list[tuple[str, float]]:
        """Catalog words ``token`` may stand for, with a similarity, best first."""
        if token in self._vocab:
            # A catalog word can also be the plural of another one ("carrers" of "carrer").
            also = sorted(f for f in singular_forms(token) if f in self._vocab)
            return [(token, 100.0)] + [(f, _INFLECTION_SCORE) for f in also[:1]]
        found: dict[str, float] = {}
        for form in itertools.chain((token,), singular_forms(token)):
            if form in self._vocab:
                found[form] = _INFLECTION_SCORE
            for word in self._forms.get(form, ()):
                found.setdefault(word, _INFLECTION_SCORE)
        if not found and len(token) >= 5 and not token.isdigit():
            found = self._fuzzy(token)
        ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:_OPTIONS_PER_WORD]

    def _fuzzy(self, token: str) -> dict[str, float]:
        # A catalog word within the tolerance differs in length by at most the tolerance.
        limit = typo_tolerance(len(token))
        if limit == 0:
            return {}
        candidates = self._buckets.near(token, limit)
        if not candidates:
            return {}
        found: dict[str, float] = {}
        for word, distance, _ in process.extract(
            token, candidates, scorer=OSA.distance, score_cutoff=limit, limit=8
        ):
            if distance <= typo_tolerance(min(len(word), len(token))) and not _other_gender(
                token, word
            ):
                score = min(_FUZZY_CAP, 100.0 * (1.0 - distance / max(len(word), len(token))))
                if score > found.get(word, 0.0):
                    found[word] = score
        return found


def _telling(alias: _Alias, written: frozenset[str]) -> frozenset[str]:
    """The alias's telling language when the citizen wrote one of its telling words as is (a
    typo or a guessed plural that reaches it says nothing about the language)."""
    return (
        alias.telling
        if alias.telling_words and not written.isdisjoint(alias.telling_words)
        else _NOTHING
    )


_VOWELS = frozenset("aeiou")


def _other_gender(a: str, b: str) -> bool:
    """Short words that differ only in their final vowel are different words, not typos:
    "cursa" (a race) is not "curso", "casa" is not "caso"."""
    return len(a) == len(b) <= 6 and a[:-1] == b[:-1] and a[-1] in _VOWELS and b[-1] in _VOWELS


class _Buckets:
    """Catalog words by length and by their first two letters, last two letters, and first and
    last letter: the fuzzy pre-filter.

    One edit in a word of five letters or more leaves its first two or its last two letters
    intact, so those two buckets hold every word within one edit. Two or three edits (words of
    eight letters or more) leave one of the three keys intact unless the typos hit both ends.
    """

    def __init__(self, words: Iterable[str]) -> None:
        table: dict[tuple[str, int], list[str]] = defaultdict(list)
        for word in words:
            if len(word) < 2:
                continue
            for key in self._keys(word):
                table[(key, len(word))].append(word)
        self._table = {k: tuple(v) for k, v in table.items()}

    @staticmethod
    def _keys(word: str) -> tuple[str, str, str]:
        return ("<" + word[:2], word[-2:] + ">", word[0] + "…" + word[-1])

    def near(self, token: str, window: int) -> list[str]:
        """Candidates for ``token`` (a word may appear more than once)."""
        if len(token) < 2:
            return []
        first, last, ends = self._keys(token)
        keys = (first, last) if window < 2 else (first, last, ends)
        n = len(token)
        table = self._table
        out: list[str] = []
        for length in range(max(1, n - window), n + window + 1):
            for key in keys:
                bucket = table.get((key, length))
                if bucket:
                    out.extend(bucket)
        return out
