#!/usr/bin/env bash
# Compatibility check outside CI (it downloads a CUDA build of torch, about 3 GB, per environment):
#   tools/compat.sh PYTHON TORCH_VERSION [PIN ...]
#   e.g. tools/compat.sh python3.13 2.11.0 'numpy==2.1.*' 'matplotlib==3.10.*'   (Colab, late 2026)
#        tools/compat.sh python3.12 2.8.0                                       (Colab's oldest torch)
#        tools/compat.sh python3.10 2.2.2 'numpy<2'          (the floors pyproject.toml declares)
# A PIN replaces the unpinned default of the same package among the preinstalled ones.
# In a fresh virtual environment it
#   1. installs what Colab has preinstalled (torch, numpy, scipy, matplotlib, scikit-learn),
#   2. installs nodelib as the chapters' install cell does, and fails unless `pip freeze` only gains
#      packages (a changed, already-imported package would force Colab to restart its runtime),
#   3. runs the unit tests and every chapter under nbval-lax: each cell must run and every hidden
#      assert must hold; stored outputs are not compared (they are printed by torch 2.13).
# Prints one summary line; the full log is in $WORK/log.
set -euo pipefail
py=$1 torch_version=$2
shift 2
preinstalled=("torch==$torch_version")
for name in numpy scipy matplotlib scikit-learn; do
  spec=$name
  for pin in "$@"; do case $pin in "$name"[=\<\>~!]*) spec=$pin ;; esac; done
  preinstalled+=("$spec")
done
root=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/nodelib-compat/$(basename "$py")-torch$torch_version}
rm -rf "$WORK" && mkdir -p "$WORK"
exec > >(grep --line-buffered -v "^WARNING: Location" | tee "$WORK/log") 2>&1
"$py" -m venv "$WORK/venv"
bin=$WORK/venv/bin
$bin/python -m pip install -q --upgrade pip
$bin/python -m pip install -q "${preinstalled[@]}"
$bin/python -m pip freeze | sort > "$WORK/before.txt"
$bin/python -m pip install -q "$root"
$bin/python -m pip freeze | sort > "$WORK/after.txt"
changed=$(comm -23 "$WORK/before.txt" "$WORK/after.txt")
added=$(comm -13 "$WORK/before.txt" "$WORK/after.txt" | cut -d= -f1 | tr '\n' ' ')
if [ -n "$changed" ]; then
  echo "FAIL: installing nodelib changed preinstalled packages:"; echo "$changed"; exit 1
fi
# The test extra (jupyter-book, nbval, ...) is installed only now, after the freeze check, and may not
# change the preinstalled packages either (the constraints hold them at their versions).
$bin/python -m pip install -q "$root[test]" -c "$WORK/before.txt"
cd "$root"
versions=$($bin/python -c "import sys, torch, numpy, matplotlib; print(f'python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}, matplotlib {matplotlib.__version__}')")
unit=$($bin/python -m pytest -q -p no:cacheprovider tests 2>&1 | tail -1)
chapters=$($bin/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=600 book 2>&1 | tail -1)
echo "$versions | install added: $added| unit: $unit | chapters (nbval-lax): $chapters"
