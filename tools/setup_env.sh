#!/usr/bin/env bash
# Create the project's virtual environment with the pinned OpenMMLab stack.
#
# Idempotent: every step is skipped when what it installs is already there, so
# a second run takes seconds. The Makefile calls it through a stamp file.
#
# Variables (all optional):
#   PYTHON       interpreter used to create the venv       (default: python3.11, else python3)
#   VENV         where the venv lives                       (default: .venv)
#   TORCH_SPEC   the torch requirement; a GPU user may pass e.g.
#                "torch==2.5.1 --index-url https://download.pytorch.org/whl/cu121"
#                                                          (default: torch==2.13.0, the CPU build)
#   MAX_JOBS     parallel compile jobs for mmcv's ops       (default: number of cores)
#
# Why the order matters (see docs/troubleshooting.md):
#   * mmcv 2.1.0 has no wheel for recent torch: it is compiled from the PyPI
#     sdist *against the installed torch*, so torch goes first and the build
#     runs with --no-build-isolation.
#   * mmcv's setup.py, mmengine 0.10.7 and openmim import pkg_resources, which
#     setuptools >= 82 removed, so setuptools<81 is pinned in the venv.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ -z "${PYTHON:-}" ]; then
    PYTHON=$(command -v python3.11 || command -v python3)
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

log() { printf '[setup_env] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

has() { "$PY" - "$@" <<'EOF'
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, _, want = spec.partition('==')
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if want and have.split('+')[0] != want:
        sys.exit(1)
EOF
}

if ! has torch; then
    log "installing $TORCH_SPEC"
    # shellcheck disable=SC2086  # TORCH_SPEC may carry pip options on purpose
    "${PIP[@]}" install $TORCH_SPEC
fi

log "build tools (setuptools<81 keeps pkg_resources for mmcv/mmengine/mim)"
has wheel ninja psutil && "$PY" -c 'import pkg_resources' 2>/dev/null \
    || "${PIP[@]}" install -q "setuptools<81" wheel ninja psutil "numpy"

if ! has mmcv==2.1.0 || ! "$PY" -c 'import mmcv.ops' 2>/dev/null; then
    log "compiling mmcv 2.1.0 with ops against $("$PY" -c 'import torch; print(torch.__version__)')"
    log "this takes 11-15 minutes on 2 CPU cores the first time; pip caches the wheel afterwards"
    MMCV_WITH_OPS=1 "${PIP[@]}" install --no-build-isolation "mmcv==2.1.0"
fi

log "runtime and test dependencies"
# pytest-xdist: make test spreads the suite over one worker per core
has mmengine==0.10.7 mmdet==3.3.0 pycocotools scipy pytest pytest-xdist \
    matplotlib \
    || "${PIP[@]}" install -q "mmengine==0.10.7" "mmdet==3.3.0" pycocotools scipy \
        pytest pytest-xdist matplotlib "setuptools<81"

# openmim's own dependency chain (opendatalab -> openxlab) downgrades setuptools
# and pins requests/rich; mim only needs the packages listed here.
has openmim==0.3.9 \
    || { "${PIP[@]}" install -q --no-deps "openmim==0.3.9" \
         && "${PIP[@]}" install -q click colorama model-index pandas requests rich tabulate; }

log "installing mmdet_maskdiff (editable, no dependencies re-resolved)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

"$PY" -c 'import mmcv.ops, mmdet, mmdet_maskdiff; print("[setup_env] ok: mmcv", mmcv.__version__, "mmdet", mmdet.__version__)'
