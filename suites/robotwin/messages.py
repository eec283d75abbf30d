"""The wording RoboTwin's UsageErrors share: what RoboTwin needs, how to point the harness at a
checkout, how to build a seed list, and an exception's text on one line."""

from __future__ import annotations

NEEDS = ("it needs a CUDA machine with RoboTwin 2.0 installed (SAPIEN 3, cuRobo and the assets "
         "from script/_download_assets.sh)")
POINT = "pass --robotwin-root /path/to/RoboTwin or set ROBOTWIN_ROOT"
SEEDS_HINT = "`wam-eval robotwin-seeds` on a RoboTwin machine"


def one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."
