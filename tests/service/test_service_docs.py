from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_python_example_of_docs_service_runs(tmp_path: Path):
    text = (REPO / "docs" / "service.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    code = blocks[0].replace(
        '"examples/mataro/config.yaml"', repr(str(REPO / "examples" / "mataro" / "config.yaml"))
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # the SQLite file and media go under tmp_path/var
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "*Paraules clau*"
    assert (tmp_path / "var" / "mataro.db").is_file()
