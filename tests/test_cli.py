import subprocess
import sys

from civicchat import __version__


def test_console_script_reports_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "civicchat", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"civicchat {__version__}"
