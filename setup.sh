#!/usr/bin/env bash
# Creates .venv inside the project and installs the pinned stack (see ../shared/docs/STACK.md).
# Idempotent: a second run only checks that everything is in place (seconds).
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3}
STAMP="$VENV/.tao_lab_installed"
REQ_HASH=$(cat requirements.txt pyproject.toml setup.sh 2>/dev/null | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQ_HASH" ]; then
  echo "[setup] .venv is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
# Keep pip's cache inside the venv so nothing is written outside the project but the venv.
export PIP_CACHE_DIR="$PWD/$VENV/.pip-cache"
$PIP install -q --upgrade pip setuptools wheel
# torch first: a CUDA build that runs on CPU; it comes from the machine's local wheel cache.
$PIP install -q torch==2.14.1 torchvision==0.29.1
# sam2 is an sdist: no build isolation and no CUDA extension (STACK.md).
SAM2_BUILD_CUDA=0 $PIP install -q --no-build-isolation -r requirements.txt
$PIP install -q --no-build-isolation --no-deps -e .
echo "$REQ_HASH" > "$STAMP"
echo "[setup] done: $($VENV/bin/python -c 'import tao_lab, torch; print("tao_lab", tao_lab.__version__, "torch", torch.__version__)')"
