import subprocess
import sys

from civicchat import __version__


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
    assert "civicchat db: error: database: unable to open database file" in out.stderr


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
