import argparse
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from civicchat import __version__
from civicchat.cli import build_parser, main

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def test_console_script_reports_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "civicchat", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"civicchat {__version__}"


def _civicchat(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civicchat", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        timeout=120,
    )


def test_an_unreachable_database_is_one_clear_line_not_a_traceback(tmp_path) -> None:
    out = _civicchat("db", "upgrade", "--url", "sqlite+aiosqlite:///no/such/dir/x.db", cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "civicchat db upgrade: error: database: unable to open database file" in out.stderr


def test_erasure_without_an_answer_does_nothing(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/civic.db"
    assert _civicchat("db", "upgrade", "--url", url, cwd=tmp_path).returncode == 0
    out = _civicchat(
        "privacy", "erase", "--url", url, "--channel", "webchat", "--account", "web",
        "--user", "v1", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "pass --yes" in out.stderr


@pytest.mark.parametrize(
    ("args", "command", "says"),
    [
        (["db", "upgrade", "--url", "mysql://x@y/z"], "db upgrade", "unsupported database"),
        (["db", "check", "--url", "mysql://x@y/z"], "db check", "unsupported database"),
        (["serve", "missing.yaml"], "serve", "cannot read the configuration missing.yaml"),
        (["worker", "missing.yaml"], "worker", "cannot read the configuration missing.yaml"),
        (["telegram-webhook", "missing.yaml", "tg"], "telegram-webhook", "missing.yaml"),
        (["keywords", "match", "missing.yaml"], "keywords match", "missing.yaml: cannot read"),
        (["keywords", "chat", "missing.yaml"], "keywords chat", "missing.yaml: cannot read"),
        (
            ["privacy", "retention", "--url", "x.db", "--account", "a", "--days", "1"],
            "privacy retention",
            "at least 2 days",
        ),
        (
            ["privacy", "export", "missing.yaml", "--channel", "webchat", "--account", "a",
             "--user", "v1"],
            "privacy export",
            "cannot read the configuration missing.yaml",
        ),
    ],
)  # fmt: skip
def test_every_command_says_an_error_in_one_line_with_status_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    command: str,
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"civicchat {command}: error: ")
    assert says in err


def test_db_check_answers_1_for_a_schema_behind_and_2_for_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "check", "--url", str(tmp_path / "new.db")]) == 1
    assert "run `civicchat db upgrade --url" in capsys.readouterr().err
    # In a subprocess: aiosqlite's thread reports a failed connection after asyncio.run ends.
    out = _civicchat("db", "check", "--url", str(tmp_path / "no" / "dir" / "x.db"), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("civicchat db check: error: database: unable to open")


def test_the_service_module_reports_errors_as_the_civicchat_command_does(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "civicchat.cli.serve", "serve", "missing.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr == (
        "civicchat serve: error: cannot read the configuration missing.yaml: "
        "No such file or directory\n"
    )


def _commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*words, name), sub
                yield from _commands(sub, (*words, name))


def test_every_commands_help_has_a_description_and_an_example() -> None:
    commands = dict(_commands(build_parser()))
    assert ("db", "upgrade") in commands
    assert ("serve",) in commands
    for words, parser in commands.items():
        assert parser.description, words
        assert parser.epilog, words
        assert f"  civicchat {' '.join(words)}" in parser.epilog, words
        parser.format_help()  # formats without error (a stray % in a help text would not)


def test_operations_doc_names_every_command() -> None:
    text = OPERATIONS.read_text()
    for words, _parser in _commands(build_parser()):
        assert re.search(rf"`civicchat {' '.join(words)}[ `]", text), words


def test_the_command_line_example_of_the_operations_doc_runs(tmp_path: Path) -> None:
    section = OPERATIONS.read_text().split("## The command line", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    (tmp_path / "examples").symlink_to(OPERATIONS.parents[1] / "examples")
    (tmp_path / "var").mkdir()
    bin_dir = Path(sys.executable).parent
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout
    assert '"keyword": "horari"' in out.stdout
    assert '"identities"' in out.stdout


def test_keywords_match_takes_the_text_as_arguments_or_from_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = str(OPERATIONS.parents[1] / "examples" / "mataro" / "catalog.yaml")
    # Standard input must not be read when the text is given (a terminal would wait for it).
    monkeypatch.setattr(sys, "stdin", io.StringIO("should not be read\n"))
    assert main(["keywords", "match", catalog, "horari bus", "no sé\nres", "--language", "es"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == ["horari bus", "no sé res"]
    assert records[0]["keyword"] == "bus"

    monkeypatch.setattr(sys, "stdin", io.StringIO("horari bus\nhorari de la deixalleria\n"))
    assert main(["keywords", "match", catalog]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == ["horari bus", "horari de la deixalleria"]
    assert records[0]["keyword"] == "bus"


def test_keywords_match_help_says_where_the_text_comes_from() -> None:
    commands = dict(_commands(build_parser()))
    help_text = " ".join(commands[("keywords", "match")].format_help().split())
    assert "[TEXT ...]" in help_text
    assert "without any TEXT, each line of standard input is one" in help_text
    assert 'civicchat keywords match examples/mataro/catalog.yaml "horari bus"' in help_text
