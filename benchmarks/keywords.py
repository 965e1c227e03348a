"""Keyword engine throughput and latency against the naive rapidfuzz peer, in one run.

A generated catalog of 1,000 keywords with about 6 aliases each in Catalan and Spanish, and
10,000 generated messages (exact aliases, no accents, typos, questions, noise, long complaints,
greetings). The peer is the issue's naive matcher::

    rapidfuzz.process.extractOne(text, all_aliases, scorer=fuzz.WRatio,
                                 processor=utils.default_process, score_cutoff=90)

The peer takes milliseconds per message, so it runs on a sample of the same messages (the
ratio compares per-message throughput). Run: ``python benchmarks/keywords.py [--peer-sample N]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable

from rapidfuzz import fuzz, process, utils

from civicchat.keywords import Catalog, KeywordEngine, parse_catalog
from civicchat.keywords.catalog import alias_key

SYLLABLES = [
    "ba", "be", "bi", "bo", "ca", "ce", "ci", "co", "da", "de", "di", "do", "fa", "fe", "ga",
    "gue", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "pa", "pe",
    "pi", "po", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "ti", "to", "va",
    "ve", "vi", "xa", "xe", "ny", "lla", "ça", "rà", "tè", "mó", "tu", "gu", "ment", "ció",
    "tat", "ria", "ll", "ble", "tra", "pre", "cor", "sal", "mar", "ner", "quil",
]  # fmt: skip
CA_QUESTIONS = [
    "on és {}?",
    "horari de {}",
    "informació sobre {}",
    "quin és el {}?",
    "{} si us plau",
]
ES_QUESTIONS = ["¿dónde está {}?", "horario de {}", "información sobre {}", "¿cuál es {}?"]
GREETINGS = ["hola", "bon dia", "buenas tardes", "gràcies!", "ok", "👍", "hola?"]


def word(rng: random.Random, low: int = 2, high: int = 4) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(low, high)))


def generate_catalog(rng: random.Random, keywords: int = 1000, per_language: int = 6) -> str:
    seen: set[str] = set()
    lines = ["languages: [ca, es]", "keywords:"]

    def fresh_alias() -> str:
        while True:
            alias = word(rng) if rng.random() < 0.7 else f"{word(rng)} {word(rng, 1, 3)}"
            key = alias_key(alias)
            if key and key not in seen and len(key) >= 3:
                seen.add(key)
                return alias

    for i in range(keywords):
        ca = [fresh_alias() for _ in range(per_language)]
        es = [fresh_alias() for _ in range(per_language)]
        lines += [
            f"  - id: kw{i}",
            f"    topic: topic{i % 20}",
            f"    aliases: {{ca: [{', '.join(ca)}], es: [{', '.join(es)}]}}",
            f"    reply: {{ca: 'Resposta {i}: https://example.org/ca/{i}', "
            f"es: 'Respuesta {i}: https://example.org/es/{i}'}}",
        ]
    return "\n".join(lines) + "\n"


def typo(rng: random.Random, text: str) -> str:
    if len(text) < 7:
        return text
    i = rng.randrange(1, len(text) - 1)
    op = rng.random()
    if op < 0.4:
        return text[:i] + text[i + 1 :]  # deletion
    if op < 0.7:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]  # transposition
    return text[:i] + rng.choice("aeiourstn") + text[i + 1 :]  # substitution


def generate_messages(
    rng: random.Random, catalog: Catalog, count: int = 10_000
) -> list[tuple[str, str | None]]:
    """Messages with the keyword that should answer them (None: a person, or nobody)."""
    aliases = [
        (alias, lang, kw.id)
        for kw in catalog.keywords
        for lang, al in kw.aliases.items()
        for alias in al
    ]
    messages: list[tuple[str, str | None]] = []
    for _ in range(count):
        alias, lang, kw_id = rng.choice(aliases)
        roll = rng.random()
        if roll < 0.25:
            messages.append((alias, kw_id))
        elif roll < 0.35:
            messages.append((utils.default_process(alias).upper(), kw_id))
        elif roll < 0.55:
            messages.append((typo(rng, alias), kw_id))
        elif roll < 0.75:
            template = rng.choice(CA_QUESTIONS if lang == "ca" else ES_QUESTIONS)
            messages.append((template.format(alias), kw_id))
        elif roll < 0.87:
            noise = " ".join(word(rng) for _ in range(rng.randint(1, 4)))
            messages.append((noise, None))  # random words may still hit an alias
        elif roll < 0.95:
            words = [word(rng) for _ in range(rng.randint(15, 40))]
            words.insert(rng.randrange(len(words)), alias)
            messages.append((" ".join(words), None))
        else:
            messages.append((rng.choice(GREETINGS), None))
    return messages


def timed(
    fn: Callable[[str], str | None], messages: list[tuple[str, str | None]]
) -> tuple[float, list[float], list[float], int]:
    """Total seconds, per-message wall and CPU microseconds, and how many answers were the
    expected ones. CPU time is shown too because shared machines make wall-clock tails noisy."""
    wall: list[float] = []
    cpu: list[float] = []
    right = 0
    clock = time.perf_counter_ns
    cpu_clock = time.thread_time_ns
    gc.collect()
    start = time.perf_counter()
    for text, expected in messages:
        t0 = clock()
        c0 = cpu_clock()
        found = fn(text)
        cpu.append((cpu_clock() - c0) / 1000)
        wall.append((clock() - t0) / 1000)
        right += found == expected
    return time.perf_counter() - start, wall, cpu, right


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-sample", type=int, default=600, help="messages the peer runs")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    text = generate_catalog(rng)
    t0 = time.perf_counter()
    catalog = parse_catalog(text, source="<generated>")
    parse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine = KeywordEngine(catalog)
    build_s = time.perf_counter() - t0
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = KeywordEngine(catalog)
    index_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    all_aliases = sorted({a for kw in catalog.keywords for al in kw.aliases.values() for a in al})
    messages = generate_messages(rng, catalog)
    print(
        f"catalog: {len(catalog.keywords)} keywords, {len(all_aliases)} distinct aliases; "
        f"{len(messages)} messages"
    )
    print(f"catalog parse + validation: {parse_s * 1000:.0f} ms")
    print(f"engine index build (load):  {build_s * 1000:.0f} ms")
    print(f"engine index memory:        {index_bytes / 1e6:.1f} MB (tracemalloc)")

    owner = {a: kw.id for kw in catalog.keywords for al in kw.aliases.values() for a in al}

    def ours(text: str) -> str | None:
        found = engine.match(text)
        return None if found is None else found.keyword_id

    def peer(text: str) -> str | None:
        found = process.extractOne(
            text, all_aliases, scorer=fuzz.WRatio, processor=utils.default_process, score_cutoff=90
        )
        return None if found is None else owner[found[0]]

    ours("warm up")
    eng_total, eng_per, eng_cpu, eng_right = timed(ours, messages)

    sample = messages[: args.peer_sample]
    peer_total, peer_per, peer_cpu, peer_right = timed(peer, sample)
    # The engine on the very same sample, for a like-for-like ratio.
    same_total, _, _, same_right = timed(ours, sample)

    print()
    print(f"{'':24}{'engine':>14}{'naive peer':>14}")
    eng_rate = len(messages) / eng_total
    peer_rate = len(sample) / peer_total
    print(f"{'messages run':24}{len(messages):>14}{len(sample):>14}")
    print(f"{'throughput (msg/s)':24}{eng_rate:>14,.0f}{peer_rate:>14,.0f}")
    print(f"{'p50 per message (µs)':24}{pct(eng_per, 50):>14.1f}{pct(peer_per, 50):>14.1f}")
    print(f"{'p99 per message (µs)':24}{pct(eng_per, 99):>14.1f}{pct(peer_per, 99):>14.1f}")
    print(f"{'max per message (µs)':24}{max(eng_per):>14.1f}{max(peer_per):>14.1f}")
    print(f"{'CPU p50 (µs)':24}{pct(eng_cpu, 50):>14.1f}{pct(peer_cpu, 50):>14.1f}")
    print(f"{'CPU p99 (µs)':24}{pct(eng_cpu, 99):>14.1f}{pct(peer_cpu, 99):>14.1f}")
    print(f"{'right (whole run)':24}{100 * eng_right / len(messages):>13.1f}%{'':>14}")
    print(
        f"{'right (peer sample)':24}{100 * same_right / len(sample):>13.1f}%"
        f"{100 * peer_right / len(sample):>13.1f}%"
    )
    print()
    print(f"throughput ratio engine / peer (whole run):  {eng_rate / peer_rate:.0f}x")
    print(f"throughput ratio engine / peer (same sample): {peer_total / same_total:.0f}x")
    goals = [
        ("ratio >= 20x", eng_rate / peer_rate >= 20),
        ("p99 < 1 ms (wall)", pct(eng_per, 99) < 1000),
        ("p99 < 1 ms (CPU)", pct(eng_cpu, 99) < 1000),
        ("load < 1 s", build_s < 1.0),
    ]
    print("goals: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals))


if __name__ == "__main__":
    main()
