"""The flat-curve threshold (:data:`lr_widget.suggestions.curve.NOISE_SIGMAS`) separates, on the
development tasks' recorded sweeps, the mid-training tasks (whose curves have no descent: the
model is part-trained) from every other task; only development tasks are read."""

from __future__ import annotations

from benchmarks import quality_cache as qc
from benchmarks.rescore import sweep_runs
from benchmarks.split import DEV_TASKS, HELD_OUT_TASKS
from benchmarks.tasks import get_task
from lr_widget.suggestions.curve import NOISE_SIGMAS, prepare


def _falls_in_noise_units(cache: dict, task: str) -> list[float]:
    """Per seed, the largest fall of the first sweep's lag-free curve over its noise."""
    falls = []
    for seed in qc.SEEDS:
        sweep = sweep_runs(cache, task, seed)[0]
        curve = prepare(sweep.lrs, sweep.lag_free_curve)
        assert not isinstance(curve, str), (task, seed, curve)
        falls.append(curve.largest_fall / sweep.curve_noise)
    return falls


def test_the_threshold_separates_mid_training_from_the_rest_on_development_tasks() -> None:
    cache = qc.load_cache()
    starts = {task: get_task(task).start for task in (*DEV_TASKS, *HELD_OUT_TASKS)}
    falls = {task: _falls_in_noise_units(cache, task) for task in DEV_TASKS}
    mid = max(f for task in DEV_TASKS if starts[task] == "mid-training" for f in falls[task])
    rest = min(f for task in DEV_TASKS if starts[task] != "mid-training" for f in falls[task])
    print(f"development: mid-training falls at most {mid:.1f} noise units, the rest at least "
          f"{rest:.1f}; threshold {NOISE_SIGMAS:g}")  # fmt: skip
    assert mid < NOISE_SIGMAS < rest
