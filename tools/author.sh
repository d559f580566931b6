#!/usr/bin/env bash
# Authoring helper: turn a percent-format script (jupytext) into a chapter notebook and execute it.
#   tools/author.sh path/to/NN_name.py      -> book/NN_name.ipynb, executed in place
# To edit an existing chapter as a script: jupytext --to py:percent book/NN_name.ipynb -o /tmp/NN_name.py
set -euo pipefail
src=$1
out=book/$(basename "${src%.py}").ipynb
jupytext --to ipynb --update-metadata '{"kernelspec":{"name":"python3","display_name":"Python 3","language":"python"},"jupytext":null}' -o "$out" "$src"
python tools/install_cell.py
python tools/execute.py "$out"
