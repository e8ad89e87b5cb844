#!/usr/bin/env bash
# Build the benchmark virtualenv (.venv-bench) with lr_widget and the anchors it is compared with:
# fastai, PyTorch Lightning and torch-lr-finder, all on the CPU build of torch 2.13.0.
#
# Usage: bash benchmarks/setup_env.sh [VENV_DIR]    (default: .venv-bench at the repository root)
#
# Why the care: an unpinned torch, or a package that needs another torch (torchvision, spacy's
# GPU extras), makes pip download multi-GB CUDA wheels. Every install below runs under a
# constraints file pinning torch==2.13.0, and fastai is installed without its dependencies
# (its torchvision and spacy are not needed by Learner.lr_find on tensors; torchvision from PyPI
# does not import with this torch anyway), its light dependencies being named one by one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-bench}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" >"$CONSTRAINTS"

"${PIP[@]}" -c "$CONSTRAINTS" "torch==$TORCH_VERSION" numpy
# lr_widget itself (editable) and the widget stack for the live-widget benchmark.
"${PIP[@]}" -c "$CONSTRAINTS" --no-deps -e "$ROOT"
"${PIP[@]}" -c "$CONSTRAINTS" "traitlets>=5.9" "ipywidgets>=8.1,<9" "bqplot>=0.13,<0.14" \
    "ipykernel>=6.29,!=7.0.*"
# Anchors with light dependencies: installed normally, torch held by the constraint.
"${PIP[@]}" -c "$CONSTRAINTS" lightning torch-lr-finder
# fastai without torchvision and spacy; these are the rest of its requirements.
"${PIP[@]}" -c "$CONSTRAINTS" --no-deps fastai
"${PIP[@]}" -c "$CONSTRAINTS" "fastcore>=2.2.22" "fasttransform>=0.0.3" "fastprogress>=0.2.4" \
    "fastdownload>=0.0.8,<2" "plum-dispatch<2.10" pandas matplotlib scipy scikit-learn \
    "pillow>=9" pyyaml requests packaging cloudpickle
# transformers for the tiny Hugging Face GPT-2 quality task (built from a config: no download).
"${PIP[@]}" -c "$CONSTRAINTS" "transformers>=4.45,<6" tokenizers
# Prodigy, whose step-size estimate is an anchor of the realistic-budget benchmark.
"${PIP[@]}" -c "$CONSTRAINTS" "prodigyopt==1.1.2"
# Helpers: py-spy for profiles (a static binary); pytest to run tests/benchmarks/test_benchmarks.py here,
# where scikit-learn is present and the tabular tasks are tested too.
"${PIP[@]}" -c "$CONSTRAINTS" py-spy "pytest>=8" "pytest-timeout>=2.3"

"$VENV/bin/python" - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.version.cuda, f"a CUDA build of torch was installed: {torch.version.cuda}"
import fastai.callback.schedule, lightning.pytorch.tuner, torch_lr_finder, lr_widget  # noqa: F401
print("bench venv ready: torch", torch.__version__)
PY
