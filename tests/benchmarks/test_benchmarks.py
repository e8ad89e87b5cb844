"""Fast checks of the benchmark helpers; none needs the anchors (fastai, Lightning,
torch-lr-finder), and the scikit-learn tasks are skipped without scikit-learn."""

from __future__ import annotations

import dataclasses
import math
import platform
from pathlib import Path

import pytest
import torch

from benchmarks import (
    anchors,
    common,
    heap,
    report,
    speed,
    split,
    stats,
    step_instructions,
    tasks,
    widget_cost,
)
from lr_widget.suggestions.registry import RULES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread, as in the benchmarks: on a busy two-core machine, two threads per
    op slow small recurrent models down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- tasks --------------------------------------------------------------------------------------


def test_batch_loader_is_reproducible_per_seed_and_drops_the_partial_batch() -> None:
    inputs, targets = torch.arange(10.0)[:, None], torch.arange(10)

    def batches(seed: int) -> list[list[int]]:
        return [y.tolist() for _, y in tasks.batch_loader(inputs, targets, 4, seed)]

    assert batches(3) == batches(3)
    assert batches(3) != batches(4)
    assert [len(batch) for batch in batches(3)] == [4, 4]


def test_log_grid_spans_the_range_with_the_given_density() -> None:
    grid = tasks.log_grid(1e-5, 1.0, 3)
    assert len(grid) == 16
    assert grid[0] == pytest.approx(1e-5)
    assert grid[-1] == pytest.approx(1.0)
    assert grid[3] == pytest.approx(1e-4)


def test_a_diverged_run_scores_its_initial_loss() -> None:
    diverged = tasks.TrainOutcome(0.1, 0, math.inf, 2.3, diverged=True)
    worse = tasks.TrainOutcome(0.1, 0, 5.0, 2.3, diverged=False)
    better = tasks.TrainOutcome(0.1, 0, 0.7, 2.3, diverged=False)
    assert (diverged.score, worse.score, better.score) == (2.3, 2.3, 0.7)


def _short(task: tasks.Task) -> tasks.Task:
    return dataclasses.replace(task, train_steps=2)


@pytest.mark.parametrize("name", ["text-lstm", "text-transformer"])
def test_text_tasks_build_and_train(name: str) -> None:
    task = _short(tasks.get_task(name))
    data = task.load_data()
    assert data.train_x.shape[1] == tasks.TEXT_SEQ_LEN
    assert data.train_y[0, :-1].tolist() == data.train_x[0, 1:].tolist()
    outcome = tasks.train_at_lr(task, data, 1e-3, seed=0)
    assert math.isfinite(outcome.val_loss)
    assert outcome.val_loss < outcome.initial_val_loss * 1.5


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn-bn", "cancer-logreg", "diabetes-mlp"])
def test_scikit_learn_tasks_build_and_train(name: str) -> None:
    pytest.importorskip("sklearn")
    task = _short(tasks.get_task(name))
    data = task.load_data()
    assert len(data.val_x) == pytest.approx(len(data.train_x) / 3, rel=0.05)
    assert math.isfinite(tasks.train_at_lr(task, data, 1e-3, seed=0).val_loss)


def test_fresh_models_are_seeded() -> None:
    task = tasks.get_task("text-lstm")
    data = task.load_data()
    first, again = task.fresh_model(data, 1), task.fresh_model(data, 1)
    other = task.fresh_model(data, 2)
    assert torch.equal(first.head.weight, again.head.weight)
    assert not torch.equal(first.head.weight, other.head.weight)


def test_every_task_is_listed_once_and_the_splits_cover_them() -> None:
    names = [task.name for task in tasks.TASKS]
    assert len(names) == len(set(names)) >= 5
    assert sorted(split.DEV_TASKS + split.HELD_OUT_TASKS) == sorted(names)
    with pytest.raises(KeyError, match="no task"):
        tasks.get_task("imagenet")


# -- contenders ---------------------------------------------------------------------------------


def test_bare_loop_and_lr_widget_take_every_step_and_only_lr_widget_restores() -> None:
    spec = anchors.SweepSpec(1e-6, 1e-2, 12, stop_on_divergence=False, suggest=False)
    for name, restores in (("bare", False), ("lr_widget", True)):
        setup = speed.tiny_mlp_setup(0)
        before = [p.detach().clone() for p in setup.model.parameters()]
        sweep = anchors.prepare(name, setup, spec)()
        assert sweep.num_steps == 12
        assert sweep.lrs[0] == pytest.approx(1e-6)
        assert sweep.lrs[-1] == pytest.approx(1e-2)
        after = list(setup.model.parameters())
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)) is restores


def test_lr_widget_contender_reports_every_rule() -> None:
    sweep = anchors.prepare("lr_widget", speed.tiny_mlp_setup(0), anchors.SweepSpec(num_steps=30))()
    assert set(sweep.suggestions) == set(RULES)


def test_unknown_contender_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown contender"):
        anchors.prepare("keras", speed.tiny_mlp_setup(0), anchors.SweepSpec())


def test_exp_schedule_matches_its_end_points() -> None:
    lrs = anchors.exp_schedule(1e-4, 1e-2, 3)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2])


# -- statistics -------------------------------------------------------------------------


def test_pairwise_ratios_divide_within_each_repetition() -> None:
    ratios = stats.pairwise_ratios({"bare": [1.0, 2.0], "x": [1.5, 2.2]}, "bare")
    assert ratios["x"] == pytest.approx([1.5, 1.1])
    assert ratios["bare"] == [1.0, 1.0]


def test_quartiles_bound_the_middle_half() -> None:
    assert stats.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (1.5, 4.5)
    assert stats.quartiles([2.0]) == (2.0, 2.0)
    assert all(math.isnan(value) for value in stats.quartiles([]))


def test_regret_and_geometric_mean() -> None:
    assert stats.regret(1.1, 1.0) == pytest.approx(0.1)
    assert stats.geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        stats.geometric_mean([1.0, 0.0])
    with pytest.raises(ValueError, match="best_loss"):
        stats.regret(1.0, 0.0)


# -- orchestration and reports ------------------------------------------------------------------


def test_speed_summary_uses_ratios_of_the_same_repetition() -> None:
    def run(wall: float, increase: float = 0.0) -> dict[str, float]:
        return {
            "wall_s": wall,
            "cpu_s": wall,
            "steps": 10,
            "peak_rss_kib": 2048,
            "sweep_rss_increase_kib": increase,
        }

    raw = {
        "runs": {"bare": [run(1.0), run(2.0)], "lr_widget": [run(1.1), run(2.1)]},
        "first": {"bare": run(1.5, 100), "lr_widget": run(1.6, 110)},
        "snapshot": None,
    }
    model = speed.SpeedModel("tiny-mlp", "test", 10, 2, speed.tiny_mlp_setup)
    summary = speed.summarise_model(model, raw)
    engine = summary["contenders"]["lr_widget"]
    assert engine["wall_ratio"] == pytest.approx((1.1 + 1.05) / 2)
    assert engine["best_time_ratio"] == pytest.approx(1.1)
    assert engine["overhead_us_per_step"] == pytest.approx(1e4)
    assert engine["extra_over_bare_mib"] == pytest.approx(10 / 1024)


def _speed_results() -> dict:
    row = {
        "steps": 10,
        "median_wall_s": 1.0,
        "wall_ratio": 1.05,
        "wall_ratio_range": [1.0, 1.1],
        "cpu_ratio": 1.02,
        "overhead_us_per_step": 12.0,
        "cpu_overhead_us_per_step": 11.0,
        "peak_rss_mib": 300.0,
        "sweep_increment_mib": 5.0,
        "extra_over_bare_mib": 0.2,
    }
    model = {
        "model": "tiny-mlp",
        "description": "test",
        "num_steps": 10,
        "repetitions": 2,
        "contenders": {"bare": row, "lr_widget": row},
        "versus_anchors": {"fastai": {"ratio": 0.5, "range": [0.4, 0.6]}},
        "widget": {"ratio": 1.01, "range": [1.0, 1.02]},
        "snapshot": {
            "grads_cleared": {
                "snapshot_bytes": 30,
                "parameter_bytes": 10,
                "buffer_bytes": 0,
                "gradient_bytes": 0,
                "optimizer_state_bytes": 20,
            }
        },
    }
    return {
        "quick": True,
        "environment": {"cpu": "test CPU", "anchors": {"fastai": "2.8"}},
        "sweep": {"start_lr": 1e-6, "end_lr": 1e-2, "optimizer": "AdamW"},
        "models": [model],
    }


def _widget_cost_results() -> dict:
    def row(ratio: float) -> dict:
        return {
            "median_cpu_ms": 100.0 * ratio,
            "cpu_ratio": ratio,
            "cpu_ratio_quartiles": [ratio, ratio],
            "cpu_ratio_interval": [ratio - 0.01, ratio + 0.01],
            "cpu_extra_ms": 100.0 * (ratio - 1),
            "wall_ratio": ratio,
            "wall_ratio_quartiles": [ratio, ratio],
        }

    case = {
        "case": "tiny-mlp",
        "description": "test",
        "num_steps": 10,
        "rounds": 3,
        "target": 1.05,
        "contenders": {"headless": row(1.0), "headless-again": row(1.0), "live": row(1.02)},
        "messages_per_sweep": 12,
        "largest_message_bytes": 2048,
        "drawing_cpu_ratio": 1.02,
        "drawing_cpu_ratio_interval": [1.01, 1.03],
        "drawing_cpu_extra_ms": 2.0,
    }
    return {"quick": True, "environment": {"cpu": "test CPU", "anchors": {}}, "cases": [case]}


def test_quick_results_file_has_both_quick_sections_with_their_numbers(tmp_path) -> None:
    import json

    results = tmp_path / "results"
    results.mkdir()
    (results / "speed-quick.json").write_text(json.dumps(_speed_results()))
    (results / "widget_cost-quick.json").write_text(json.dumps(_widget_cost_results()))
    (results / "speed.json").write_text(json.dumps({**_speed_results(), "quick": False}))
    written = report.write_results(results, quick=True)
    assert written == tmp_path / "RESULTS-quick.md"
    text = written.read_text()
    assert text.index("## Headline") < text.index("## Speed and memory")
    assert text.index("## Speed and memory") < text.index("## The live widget's own cost")
    assert "`.venv-bench/bin/python -m benchmarks.speed --quick`" in text
    assert "test CPU" in text
    assert "| tiny-mlp: lr_widget within 10% of the bare loop | x1.05 | x1.02 | yes |" in text
    assert "time / bare loop: lr_widget x1.05 (CPU x1.02, +11 µs CPU per step)" in text
    assert "| tiny-mlp: live widget within 5% of headless (CPU) | x1.02 (95% 1.01-1.03) | " \
        "yes (the whole 95% interval) |" in text  # fmt: skip
    assert "Live widget / headless, CPU time in one process, kernel-encoded messages: " \
        "tiny-mlp x1.02" in text  # fmt: skip
    assert not (tmp_path / "RESULTS.md").exists()  # the full results are left alone


def test_the_results_file_renders_the_sections_in_order_and_refuses_unknown_results() -> None:
    assert [section.stem for section in report.SECTIONS] == [
        "speed", "widget_cost", "heap", "step_instructions", "budget-rescored", "quality-rescored",
    ]  # fmt: skip
    assert [section.stem for section in report.SECTIONS if section.has_quick] == [
        "speed",
        "widget_cost",
    ]
    assert "## Headline" not in report.render({})
    with pytest.raises(KeyError, match="quality"):
        report.render({"quality": {}})


def test_instruction_counts_give_per_step_and_per_sweep_figures_and_render() -> None:
    stderr = "==7== Events    : Ir\n==7== Collected : 9,764,419,900\n==7== I   refs: 1\n"
    assert step_instructions.parse_collected(stderr) == 9_764_419_900
    with pytest.raises(RuntimeError, match="no instruction count"):
        step_instructions.parse_collected("valgrind: failed to start")
    short, long = step_instructions.SHORT_STEPS, step_instructions.LONG_STEPS
    bare = {0: 1_000_000, short: 1_000_000 + short * 1_000, long: 1_000_000 + long * 1_000}
    # lr_widget: 30 more instructions per step and 5,000 more per sweep.
    ours = {0: 2_000_000, short: 2_005_000 + short * 1_030}
    ours[long] = 2_005_000 + long * 1_030
    figures = step_instructions.summarise({"bare": bare, "lr_widget": ours}, 1e-3)
    assert figures["extra_per_step"] == 30.0
    assert figures["extra_per_sweep"] == 5_000.0
    assert figures["step_ratio"] == pytest.approx(1.03)
    assert figures["extra_us_per_step"] == pytest.approx(30.0)  # 1 ns per instruction here
    results = {
        **figures, "environment": {"cpu": "test CPU"}, "model": "MLP", "warmup_steps": 50,
        "steps": [short, long], "native_extra_ms_per_sweep": 1.5,
    }  # fmt: skip
    text = report.render({"step_instructions": results})
    assert "## Instructions per step" in text
    assert "| lr_widget - bare | +30 | +5,000 |" in text
    assert "under 20 µs (by instructions) | 30 µs (x1.0300 of the bare step) | **no** |" in text
    assert "+30 instructions per step beyond the bare loop" in text
    assert "+5,000 instructions per sweep (1.5 ms CPU, timed natively)" in text


@pytest.mark.parametrize("module", [stats, step_instructions, common, heap])
def test_the_benchmarks_docstring_examples_hold(module) -> None:
    import doctest

    outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0
    assert outcome.failed == 0


_ALLOCATE_AND_FREE = """
import resource, sys
from benchmarks import heap
if sys.argv[1] == "kept":
    assert heap.keep_freed_memory() is not None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    blocks = [bytearray(size << 20) for size in (1, 2, 3, 5, 8)]
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_a_kept_heap_reuses_freed_memory_instead_of_faulting_it_back_in() -> None:
    import subprocess
    import sys

    def faults(mode: str) -> int:
        command = [sys.executable, "-c", _ALLOCATE_AND_FREE, mode]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
        return int(done.stdout.split()[-1])

    # 19 MiB a round: glibc hands most of it back each time and faults it in again (about
    # 120,000 faults); kept, only the first round's pages fault (about 5,000).
    default, kept = faults("default"), faults("kept")
    assert kept * 5 < default, (default, kept)


def test_median_interval_widens_with_confidence_and_needs_enough_values() -> None:
    values = [float(v) for v in range(1, 42)]
    low, high = stats.median_interval(values)
    assert low < stats.median(values) < high
    wider = stats.median_interval(values, confidence=0.999)
    assert wider[0] < low
    assert wider[1] > high
    assert all(math.isnan(bound) for bound in stats.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert stats.median_interval([3.0, 1.0, 2.0, 5.0, 4.0, 6.0]) == (1.0, 6.0)  # 97% at n = 6


def test_session_comm_encodes_and_signs_each_widget_message_as_a_kernel_does(monkeypatch) -> None:
    import comm
    import ipywidgets
    from jupyter_client.session import Session

    monkeypatch.setattr(comm, "create_comm", comm.create_comm)  # restored after the test
    widget_cost.install_session_comm()
    slider = ipywidgets.IntSlider()
    widget_cost.TALLY.reset()
    slider.value = 7
    assert widget_cost.TALLY.messages == 1
    frames = widget_cost.TALLY.last_frames
    assert widget_cost.TALLY.largest_bytes == sum(len(frame) for frame in frames)
    delimiter = frames.index(b"<IDS|MSG>")
    message = Session(key=widget_cost.SESSION_KEY).deserialize(frames[delimiter + 1 :])
    assert message["msg_type"] == "comm_msg"
    assert message["content"]["comm_id"] == slider.model_id
    assert message["content"]["data"] == {"method": "update", "state": {"value": 7},
                                          "buffer_paths": []}  # fmt: skip
    with pytest.raises(ValueError, match="Invalid Signature"):
        Session(key=b"another key").deserialize(frames[delimiter + 1 :])
    slider.close()


def test_widget_cost_times_every_contender_and_renders_its_verdicts(monkeypatch) -> None:
    import comm

    monkeypatch.setattr(comm, "create_comm", comm.create_comm)
    widget_cost.install_session_comm()
    case = widget_cost.WidgetCase("tiny-mlp", "tiny-mlp", 100, 1, target=1.05)
    short = widget_cost.WidgetCase("tiny-mlp", "tiny-mlp", 3, 1)
    raw = widget_cost.measure_case(short, rounds=1)
    assert set(raw["cpu_s"]) == set(widget_cost.CONTENDERS)
    assert all(len(times) == 1 and times[0] > 0 for times in raw["cpu_s"].values())
    assert raw["messages_per_sweep"] > 10
    assert raw["largest_message_bytes"] > 0
    # Synthetic rounds: the widget 1% over headless in every one, then 4% over with a spread
    # that reaches past the 5% target.
    base = [0.1] * 9
    steady = {**raw, "cpu_s": {name: base for name in widget_cost.CONTENDERS}}
    steady["cpu_s"] = {**steady["cpu_s"], "live": [0.101] * 9}
    steady["wall_s"] = steady["cpu_s"]
    spread = dict(steady)
    spread["cpu_s"] = {**steady["cpu_s"], "live": [0.1 * r for r in
                       (1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08)]}  # fmt: skip
    summaries = [widget_cost.summarise_case(case, steady), widget_cost.summarise_case(case, spread)]
    assert summaries[0]["target"] == 1.05
    assert widget_cost.summarise_case(short, steady)["target"] is None  # informs, no verdict
    assert summaries[0]["contenders"]["live"]["cpu_ratio"] == pytest.approx(1.01)
    assert summaries[0]["contenders"]["live"]["cpu_extra_ms"] == pytest.approx(1.0)
    assert summaries[0]["drawing_cpu_ratio"] == pytest.approx(1.01)  # live / headless-in-thread
    text = report.render({"widget_cost": {"environment": {"cpu": "test CPU"}, "cases": summaries}})
    assert "## The live widget's own cost" in text
    assert "| tiny-mlp: live widget within 5% of headless (CPU) | x1.01 (95% 1.01-1.01) | " \
        "yes (the whole 95% interval) |" in text  # fmt: skip
    assert "x1.04 (95% 1.01-1.07) | median only: the 95% interval reaches past it |" in text
    assert "Live widget / headless, CPU time in one process" in text
    assert "The drawing alone (`live` / `headless-in-thread`, same round): x1.01 (95% " in text


def test_markdown_table_and_number_format() -> None:
    assert common.fmt(None) == "-"
    assert common.fmt(float("nan")) == "-"
    assert common.fmt(1.23456) == "1.23"
    assert common.fmt(1e-6) == "1.00e-06"
    assert common.markdown_table(["a"], [[3]]).splitlines()[-1] == "| 3 |"


def test_the_widget_under_load_case_sets_its_threads_and_reports_the_wall_ratio() -> None:
    case = widget_cost.WidgetCase("tiny, one busy core", "tiny-mlp", 3, 1, busy_cores=1,
                                  threads=2)  # fmt: skip
    threads = torch.get_num_threads()
    with widget_cost._under_load(case):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == threads  # restored
    base = [0.1] * 5
    raw = {
        "cpu_s": {name: base for name in widget_cost.CONTENDERS},
        "wall_s": {**{name: base for name in widget_cost.CONTENDERS}, "live": [0.12] * 5},
        "messages_per_sweep": 10,
        "largest_message_bytes": 100,
    }
    summary = widget_cost.summarise_case(case, raw)
    assert summary["busy_cores"] == 1
    assert summary["threads"] == 2
    text = report.render({"widget_cost": {"environment": {"cpu": "test CPU"},
                                          "cases": [summary]}})  # fmt: skip
    assert "The widget under load: tiny, one busy core, 2 torch threads: live / headless " \
        "wall time x1.2 (median of 5 rounds; A/A x1)." in text  # fmt: skip
    assert "beside 1 busy core(s), 2 torch threads (read the wall-time ratio)" in text
