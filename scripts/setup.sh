#!/usr/bin/env bash
# Creates .venv (if missing) and installs zotheory with every extra, pinned by constraints.txt.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# constraints.txt pins every version, torch==2.13.0 included (the CPU wheel on this machine's
# wheel cache; elsewhere add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu so pip
# does not fetch the multi-GB CUDA build).
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,llm,minilm,notebooks]"
.venv/bin/python -c "import torch, zotheory; print(f'zotheory {zotheory.__version__} with torch {torch.__version__}')"
