#!/usr/bin/env bash
# The prepared GPU check of issue 21 (item 4), for a session lent a device: one command, well inside 10 minutes.
#   device run: bash benchmarks/gpu_check.sh      (results under $OUT, or benchmarks/results/ without it)
# On a bare machine: wheels the image lacks (pydantic, ...) in .whl/ and FashionMNIST's idx files in
# .gpudata/fashion_mnist/ travel as carried paths; the package runs from src/.
# 1. the CUDA-only tests (compiled Triton kernels = the step loop; CUDA random states); 2. LIF LeNet training
# throughput against the ANN floor at batch 64 and 256 (targets 0.8 and 0.9), TA-LIF at batch 64 (target: within
# 1.1x LIF), each with the fused Triton path; 3. the same LIF pair under bf16 autocast (optim.amp: bf16).
set -uo pipefail
export PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
[ -d .gpudata ] && export SPIKESHIELD_DATA="$PWD/.gpudata"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q -rs -p no:cacheprovider tests/test_lif_triton.py tests/test_gradients_stochastic.py \
    tests/test_structure.py 2>&1 | tee "$out/gpu_tests.log" | tail -5
for args in "--batch 64" "--batch 256" "--batch 64 --neuron talif" "--batch 64 --amp bf16" "--batch 256 --amp bf16"; do
    name=$(echo "$args" | tr -d ' -')
    python3 benchmarks/throughput.py --device cuda --rounds 8 $args --out "$out/throughput_cuda_$name.json"
done
