#!/usr/bin/env bash
# Create .venv (if missing) and install lapo into it with CPU PyTorch and Procgen.
# Safe to rerun: installed packages are kept.
#   PYTHON      interpreter to build the venv from (default: python3; 3.11 or 3.12)
#   TORCH_SPEC       torch requirement installed first (default: torch==2.13.0, a CPU wheel here)
#   TORCH_INDEX_URL  index for that torch install only (e.g. https://download.pytorch.org/whl/cpu
#                    for the CPU build where PyPI's Linux wheel is the CUDA one); default: pip's
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# CPU torch first: lapo only asks for torch>=2.4, and an unpinned torch requirement resolved by pip
# would pull the multi-GB CUDA build onto a CPU machine. With torch present, the range is satisfied.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${PIP[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
fi

# formats: LeRobot (pyarrow) and Minari (h5py) import and export, so their tests run too;
# control: Gymnasium + pygame for continuous-control tasks rendered to pixels (small wheels).
"${PIP[@]}" -e ".[dev,formats,control]"

# Procgen: procgen-mirror's and gym3's metadata pin numpy<2 and gym<1 (the unmaintained gym), which
# we do not want; their real runtime needs (cffi, imageio, filelock) are lapo's own dependencies,
# and lapo.envs imports ProcgenGym3Env without gym. Hence --no-deps.
if ! .venv/bin/python -c "import importlib.util as u; assert u.find_spec('procgen') and u.find_spec('gym3')" 2>/dev/null; then
    "${PIP[@]}" --no-deps procgen-mirror==0.10.7 gym3==0.3.3
fi
.venv/bin/python -c "import lapo, torch, numpy; print(f'lapo {lapo.__version__}: torch {torch.__version__}, numpy {numpy.__version__}')"
