#!/usr/bin/env bash
# The prepared GPU check of issue 21 (item 4), for a session lent a device: one command, well inside 10 minutes.
#   device run: bash benchmarks/gpu_check.sh      (results under $OUT, or benchmarks/results/ without it)
# 1. the CUDA-only tests (compiled Triton kernels = the step loop; CUDA random states); 2. LIF LeNet training
# throughput against the ANN floor at batch 64 and 256 (targets 0.8 and 0.9), TA-LIF at batch 64 (target: within
# 1.1x LIF), each with the fused Triton path.
set -uo pipefail
export PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
python -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())"
python -m pytest -q -rs tests/test_lif_triton.py tests/test_gradients_stochastic.py tests/test_structure.py 2>&1 | \
    tee "$out/gpu_tests.log" | tail -5
for args in "--batch 64" "--batch 256" "--batch 64 --neuron talif"; do
    name=$(echo "$args" | tr -d ' -')
    python benchmarks/throughput.py --device cuda --rounds 8 $args --out "$out/throughput_cuda_$name.json" | tail -4
done
