"""Benchmarks of lr_widget against the LR finders users would otherwise pick.

``python -m benchmarks.speed``, ``python -m benchmarks.rescore`` and the others (see
``benchmarks/README.md``) each run one benchmark, save its raw numbers under
``benchmarks/results/`` and rewrite ``benchmarks/RESULTS.md``. The anchors run in ``.venv-bench``:
``bash benchmarks/setup_env.sh`` builds it.
"""
