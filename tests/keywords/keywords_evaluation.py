"""The keyword engine against a labelled evaluation set, beside the naive baseline.

Run it for the report (``python tests/keywords/keywords_evaluation.py [CATALOG SET...]``); the test
``test_keywords_evaluation.py`` holds the engine to the figures the issue asks for.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rapidfuzz import fuzz, process, utils

from civicchat.keywords import AnswerKind, Catalog, KeywordEngine, load_catalog

ROOT = Path(__file__).resolve().parents[2]
MATARO_CATALOG = ROOT / "examples" / "mataro" / "catalog.yaml"
MATARO_SET = Path(__file__).resolve().parent / "evaluation_mataro.yaml"
# Written after the rules were tuned on MATARO_SET; see its header.
MATARO_HELDOUT = Path(__file__).resolve().parent / "evaluation_mataro_heldout.yaml"
INDEX = "INDEX"


@dataclass(frozen=True)
class Case:
    text: str
    expect: str | None
    lang: str | None
    kind: str
    known: str | None = None  # the conversation's language before the message (web chat's ?lang=)


@dataclass(frozen=True)
class Prediction:
    """``answer`` is a keyword id, ``INDEX`` or ``None``; ``options`` is set for a clarify."""

    answer: str | None
    language: str | None = None
    options: tuple[str, ...] = ()


@dataclass
class Scores:
    name: str
    total: int = 0
    right: int = 0
    false_answers: int = 0
    missed: int = 0
    clarified: int = 0
    language_checked: int = 0
    language_right: int = 0
    mistakes: list[tuple[Case, Prediction]] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)
    kind_totals: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0

    @property
    def false_rate(self) -> float:
        return self.false_answers / self.total if self.total else 0.0

    @property
    def language_accuracy(self) -> float:
        return self.language_right / self.language_checked if self.language_checked else 1.0


def load_cases(path: Path = MATARO_SET) -> list[Case]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        Case(
            str(item["text"]),
            item.get("expect"),
            item.get("lang"),
            str(item["kind"]),
            item.get("known"),
        )
        for item in raw
    ]


def engine_predictor(engine: KeywordEngine) -> Callable[[str, str | None], Prediction]:
    def predict(text: str, known: str | None = None) -> Prediction:
        answer = engine.answer(text, language=known)
        if answer is None:
            return Prediction(None)
        if answer.kind is AnswerKind.INDEX:
            return Prediction(INDEX, answer.language)
        assert answer.match is not None
        if answer.kind is AnswerKind.CLARIFY:
            runner = answer.match.runner_up
            options = (answer.match.keyword_id, runner.keyword_id if runner else "")
            return Prediction(answer.match.keyword_id, answer.language, options)
        return Prediction(answer.match.keyword_id, answer.language)

    return predict


def baseline_predictor(catalog: Catalog) -> Callable[[str, str | None], Prediction]:
    """The naive peer of the issue: ``extractOne(WRatio, default_process, cutoff 90)``."""
    owners: dict[str, tuple[str, str]] = {}
    for kw in catalog.keywords:
        for lang, aliases in kw.aliases.items():
            for alias in aliases:
                owners.setdefault(alias, (kw.id, lang))
    choices = list(owners)

    def predict(text: str, known: str | None = None) -> Prediction:
        found = process.extractOne(
            text, choices, scorer=fuzz.WRatio, processor=utils.default_process, score_cutoff=90
        )
        if found is None:
            return Prediction(None)
        keyword, lang = owners[found[0]]
        return Prediction(keyword, lang)

    return predict


def evaluate(
    name: str, predict: Callable[[str, str | None], Prediction], cases: list[Case]
) -> Scores:
    scores = Scores(name)
    for case in cases:
        got = predict(case.text, case.known)
        scores.total += 1
        scores.kind_totals[case.kind] += 1
        if got.options:
            scores.clarified += 1
            ok = case.expect in got.options
        else:
            ok = got.answer == case.expect
        if ok:
            scores.right += 1
            scores.by_kind[case.kind] += 1
            if case.lang and got.answer is not None:
                scores.language_checked += 1
                scores.language_right += got.language == case.lang
        else:
            scores.mistakes.append((case, got))
            if got.answer is None:
                scores.missed += 1
            else:
                scores.false_answers += 1
    return scores


def report(results: list[Scores], *, mistakes: bool = True) -> str:
    lines = [f"{'':28}" + "".join(f"{s.name:>14}" for s in results)]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"{label:28}" + "".join(f"{v:>14}" for v in values))

    row("messages", [str(s.total) for s in results])
    row("right keyword", [f"{100 * s.accuracy:.1f} %" for s in results])
    row("false answers", [f"{100 * s.false_rate:.1f} %" for s in results])
    row("missed (to a person)", [f"{100 * s.missed / s.total:.1f} %" for s in results])
    row("asked 'Volia dir...?'", [str(s.clarified) for s in results])
    row("reply language right", [f"{100 * s.language_accuracy:.1f} %" for s in results])
    for kind in results[0].kind_totals:
        row(
            f"  {kind}",
            [f"{s.by_kind[kind]}/{s.kind_totals[kind]}" for s in results],
        )
    for s in results if mistakes else []:
        lines.append(f"\n{s.name}: {len(s.mistakes)} wrong")
        for case, got in s.mistakes:
            shown = f"{got.answer} or {got.options[1]}" if got.options else str(got.answer)
            lines.append(f"  {case.text[:60]!r:64} expected {case.expect}, got {shown}")
    return "\n".join(lines)


def run(catalog_path: Path = MATARO_CATALOG, *set_paths: Path) -> list[Scores]:
    """The engine and the naive peer on the given sets (default: both Mataró sets)."""
    catalog = load_catalog(catalog_path)
    cases = [c for path in set_paths or (MATARO_SET, MATARO_HELDOUT) for c in load_cases(path)]
    return [
        evaluate("engine", engine_predictor(KeywordEngine(catalog)), cases),
        evaluate("naive WRatio", baseline_predictor(catalog), cases),
    ]


if __name__ == "__main__":
    paths = [Path(a) for a in sys.argv[1:]]
    if paths:
        print(report(run(*paths)))
    else:
        for set_path in (MATARO_SET, MATARO_HELDOUT):
            print(f"== {set_path.name}")
            print(report(run(MATARO_CATALOG, set_path)) + "\n")
