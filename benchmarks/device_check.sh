#!/usr/bin/env bash
# Runs the CUDA checks on a machine with a GPU but no package index: the Python packages the GPU
# image lacks travel as wheels in .whl/ (see docs/gpu.md), installed into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
python3 -m pytest -q -p no:cacheprovider -rs tests/e2e/test_cuda_endpoint.py "$@"
