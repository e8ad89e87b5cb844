#!/usr/bin/env bash
# One entry point for people and CI: set up a virtual environment, then run a job.
#   ./dev.sh lab    set up, then open JupyterLab on notebooks/quickstart.ipynb (localhost, with a token)
#   ./dev.sh demo   set up, then run a headless sweep on the built-in demo and print the suggestions
#   ./dev.sh test   set up (test extras and Debian's chromium when root), then ruff, mypy and pytest
#   ./dev.sh setup  only set up
# Set LR_WIDGET_VENV to use another environment folder (default: .venv beside this script).
set -euo pipefail
cd "$(dirname "$0")"
venv="${LR_WIDGET_VENV:-.venv}"
py="$venv/bin/python"

setup() {
    local extras="$1"
    if [ ! -x "$py" ]; then
        python3 -m venv "$venv"
    fi
    "$py" -m pip install --quiet --upgrade pip
    # Pinned here, not in the package: torch 2.13.0 is the CPU wheel that the test machines hold;
    # an unpinned torch would pull a multi-GB CUDA build.
    "$py" -m pip install --quiet "torch==2.13.0"
    # The pin again beside the extras: no extra (transformers, accelerate...) may move torch.
    "$py" -m pip install --quiet -e ".[$extras]" "torch==2.13.0"
    if [ "$extras" = "test" ]; then
        # fastai without its torchvision and spacy (they would move torch; Learner needs
        # neither); the test extra holds the rest of its requirements.
        "$py" -m pip install --quiet --no-deps "fastai>=2.7,<3"
    fi
}

ensure_chromium() {
    if command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ]; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is not installed; browser tests will be skipped (install Debian's chromium)" >&2
    fi
}

job="${1:-}"
shift || true
case "$job" in
    setup)
        setup "test"
        ;;
    demo)
        setup "notebook"
        exec "$py" -m lr_widget demo "$@"
        ;;
    lab)
        setup "notebook"
        # Jupyter refuses to run as root (containers, CI machines) unless told to.
        if [ "$(id -u)" = 0 ]; then
            set -- --allow-root "$@"
        fi
        exec "$py" -m lr_widget lab "$@"
        ;;
    test)
        setup "test"
        ensure_chromium
        # Kernels, Chromium and pytest share the CPU during browser tests: torch's spinning OpenMP
        # threads would starve them (sweeps measured 100x slower under load without this).
        export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
        "$venv/bin/ruff" check lr_widget tests benchmarks
        "$venv/bin/ruff" format --check lr_widget tests benchmarks
        "$venv/bin/mypy"
        exec "$py" -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh {lab|demo|test|setup} [args...]" >&2
        exit 2
        ;;
esac
