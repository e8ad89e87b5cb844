"""Benchmarks of lr_widget against the LR finders users would otherwise pick.

``python -m benchmarks.speed`` and ``python -m benchmarks.quality`` each run one benchmark, save
its raw numbers under ``benchmarks/results/`` and rewrite ``benchmarks/RESULTS.md``. Both need the
anchors installed: ``bash benchmarks/setup_env.sh`` builds ``.venv-bench`` with them.
"""
