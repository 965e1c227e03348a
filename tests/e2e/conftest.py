from __future__ import annotations

import sys
from pathlib import Path

# The fake Graph API / Bot API and the payload builders are shared with tests/service.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
