#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (the device tool runs it in a copy of the
# repo; results go under $OUT): the GPU-marked tests, the U-Net throughput on CUDA against
# diffusers, and the Imagen preset's per-stage sampling times at batch 1 and 8 (random
# weights). The machine brings torch with CUDA; our other needs travel as wheels (.whl,
# see the device tool's notes) when it lacks them. About 8 minutes on an H100.
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:$PWD/bench:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
  | tee -a "$OUT/gpu.txt"
timeout 180 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py 2>&1 \
  | tee "$OUT/pytest_gpu.log"
timeout 180 python3 bench/unet_throughput.py --device cuda --sizes 32,64 --rounds 2 \
  --peers before,diffusers --precisions fp32,bf16 --out "$OUT/unet_throughput_cuda" 2>&1 \
  | tee "$OUT/unet_throughput.log"
timeout 150 python3 bench/stage_times.py --device cuda --batches 1,8 --repeats 3 \
  --out "$OUT/stage_times" 2>&1 | tee "$OUT/stage_times.log"
