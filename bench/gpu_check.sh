#!/usr/bin/env bash
# The one prepared check for a lent GPU machine (device tool; about 6 minutes of device time).
# Here, first:   bash ../shared/tools/device-wheels.sh     (keras, namex, optree into .whl/)
# Then run it there, carrying .whl:   bash bench/gpu_check.sh
# It times training throughput of both networks (issue 6) and the SRM engines at the paper's
# scale on the GPU (issue 7), writing everything it prints to $OUT (or ./gpu_check_out).
# Not yet run on a device: the first session with one should record what it prints in
# bench/RESULTS.md.
set -uo pipefail
out=${OUT:-gpu_check_out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheels missing: run ../shared/tools/device-wheels.sh here first"; exit 2; }
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi -L 2>&1 | tee "$out/gpu.txt"
python3 -c "import jax; print(jax.devices())" 2>&1 | tee -a "$out/gpu.txt"
timeout 240 python3 bench/bench_train_throughput.py --steps 300 2>&1 | tee "$out/train_throughput.txt"
# BrainIAK is not installed there: its CPU time at this scale is in bench/RESULTS.md (111.6 s).
timeout 240 python3 bench/bench_srm.py --scale paper --engines jax-f32-ns,jax-f32 --repeats 3 \
  --json "$out/srm_gpu.json" 2>&1 | tee "$out/srm_gpu.txt"
