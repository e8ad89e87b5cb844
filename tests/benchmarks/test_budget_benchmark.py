"""The realistic-budget benchmark's machinery: long runs that contain the short ones, where
fine-tuning and mid-training tasks start, the adaptive window, and the anchors scored offline."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import budget_cache as bc
from benchmarks import budget_rescore as br
from benchmarks import quality_cache as qc
from benchmarks import task_starts as ts
from benchmarks import tasks


def _short(name: str, **changes: Any) -> tasks.Task:
    return dataclasses.replace(tasks.get_task(name), **{"train_steps": 4, **changes})


def test_one_long_run_gives_the_outcome_of_every_shorter_run() -> None:
    task = _short("text-lstm")
    data = task.load_data()
    long = tasks.train_at_lr(task, data, 3e-3, seed=1, steps=12, checkpoints=(4, 8, 12))
    reply = bc.run_reply(long)
    for steps in (4, 8, 12):
        alone = tasks.train_at_lr(task, data, 3e-3, seed=1, steps=steps)
        assert bc.run_score(reply, steps, "final") == pytest.approx(alone.score, rel=1e-6)
    assert bc.run_score(reply, 12, "final") == qc._round(long.val_loss)
    assert long.diverged_at is None


def test_a_run_that_diverges_scores_its_start_from_then_on() -> None:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, generator=generator), torch.randn(64, 1, generator=generator)
    data = tasks.TaskData(x, y, x, y, {"features": 3})
    task = _short(
        "text-lstm", build_model=tasks.tm.linear_model, loss_fn=torch.nn.functional.mse_loss,
        make_optimizer=tasks.sgd, batch_size=8,
    )  # fmt: skip
    outcome = tasks.train_at_lr(
        task, data, 10.0, seed=0, steps=30, checkpoints=(2, 30), recorded_blocks=3
    )
    assert outcome.diverged_at is not None
    assert bc.run_score(bc.run_reply(outcome), 30, "final") == qc._round(outcome.initial_val_loss)
    assert len(outcome.block_train_losses) == (outcome.diverged_at - 1) // tasks.TRAIN_LOSS_BLOCK


def test_checkpoints_outside_the_run_are_refused() -> None:
    task = _short("text-lstm")
    with pytest.raises(ValueError, match=r"checkpoints must lie in 1\.\.4"):
        tasks.train_at_lr(task, task.load_data(), 1e-3, seed=0, checkpoints=(5,))


def test_a_mid_training_run_starts_from_the_warm_up_with_its_optimizer_state() -> None:
    task = _short("text-lstm-mid", warm_up_steps=3, warm_up_lr=1e-3)
    data = task.load_data()
    model, optimizer = task.starting_point(data, seed=0, lr=0.05)
    fresh = task.fresh_model(data, seed=0)
    assert not torch.equal(model.head.weight, fresh.head.weight)  # trained by the warm-up
    assert all(group["lr"] == 0.05 for group in optimizer.param_groups)
    assert all(state["step"] == 3 for state in optimizer.state.values())
    again, _ = task.starting_point(data, seed=0, lr=1e-4)
    assert torch.equal(model.head.weight, again.head.weight)
    # runs never share tensors with the cached checkpoint
    optimizer.zero_grad()
    tasks.train_at_lr(task, data, 0.05, seed=0)
    third, third_optimizer = task.starting_point(data, seed=0, lr=1e-4)
    assert torch.equal(third.head.weight, again.head.weight)
    assert next(iter(third_optimizer.state.values()))["step"] == 3


def test_a_fine_tuned_model_shares_the_pretrained_body_and_draws_its_own_head() -> None:
    plan = ts.Pretraining(
        "short", ts.pretraining_text_data, lambda data: tasks.tm.CharLSTM(data.sizes["vocab"]),
        tasks.tm.token_cross_entropy, 3e-3, 3, 8,
    )  # fmt: skip
    build = ts.fine_tuned(plan, lambda data: tasks.tm.CharLSTM(data.sizes["vocab"]))
    data = tasks.td.text_data()
    torch.manual_seed(1)
    first = build(data)
    torch.manual_seed(2)
    second = build(data)
    assert torch.equal(first.embed.weight, second.embed.weight)
    assert not torch.equal(first.head.weight, second.head.weight)
    torch.manual_seed(1)
    untrained = tasks.tm.CharLSTM(data.sizes["vocab"])
    assert not torch.equal(first.embed.weight, untrained.embed.weight)
    assert ts.head_name(first) == "head"


def _quality(scores_by_index: dict[int, float], diverged_from: int = 99) -> dict[str, Any]:
    """A quality cache whose 1x grid has these mean scores (others 2.0) for task digits-mlp."""
    jobs = {}
    for index, lr in enumerate(qc.GRID):
        for seed in qc.SEEDS:
            jobs[f"train|constant|digits-mlp|{qc.lr_key(lr)}|{seed}"] = {
                "score": scores_by_index.get(index, 2.0),
                "initial": 2.0,
                "diverged": index >= diverged_from,
                "train_losses": [2.0] * 40,
            }
    return {"jobs": jobs}


def _long_jobs(plan: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [job for job in plan if job[0] == bc.RUN]


def test_the_window_surrounds_the_short_optimum_and_skips_diverged_lrs() -> None:
    quality = _quality({12: 0.5}, diverged_from=15)
    plan = _long_jobs(bc.plan_jobs(quality, {"jobs": {}}, ["digits-mlp"]))
    indices = sorted({qc.GRID.index(job[3]) for job in plan})
    assert indices == list(range(12 - bc.WINDOW[0], 15))
    assert {job[4] for job in plan} == set(qc.SEEDS)
    assert {job[5] for job in plan} == {bc.lengths_of("digits-mlp")[-1]}


def _answer(budget: dict[str, Any], jobs: list[tuple[Any, ...]], best: int) -> None:
    """Long-run replies whose scores fall towards grid index ``best`` at every length."""
    for job in jobs:
        index = qc.GRID.index(job[3])
        score = 0.1 + 0.05 * abs(index - best)
        steps = bc.checkpoints_of(job[2])
        budget["jobs"][qc.job_key(job)] = {
            "val_losses": [[n, score] for n in steps],
            "initial": 2.0,
            "diverged_at": None,
        }


def test_an_optimum_on_the_windows_edge_widens_it_then_the_oracle_seeds_follow() -> None:
    quality, budget = _quality({12: 0.5}), {"jobs": {}}
    first = _long_jobs(bc.plan_jobs(quality, budget, ["digits-mlp"]))
    low = 12 - bc.WINDOW[0]
    _answer(budget, first, best=low - 3)  # the longer runs want a lower LR than the window has
    second = _long_jobs(bc.plan_jobs(quality, budget, ["digits-mlp"]))
    assert sorted({qc.GRID.index(job[3]) for job in second}) == [low - 2, low - 1]
    _answer(budget, second, best=low - 3)
    third = _long_jobs(bc.plan_jobs(quality, budget, ["digits-mlp"]))
    assert sorted({qc.GRID.index(job[3]) for job in third}) == [low - 4, low - 3]
    _answer(budget, third, best=low - 3)
    settled = _long_jobs(bc.plan_jobs(quality, budget, ["digits-mlp"]))
    assert {job[4] for job in settled} == set(bc.ORACLE_SEEDS)


def test_a_run_is_scored_at_its_end_or_at_its_best_checkpoint_until_then() -> None:
    reply = {
        "val_losses": [[10, 0.9], [20, 0.3], [40, 0.5], [80, 1.5]], "initial": 1.2,
        "diverged_at": 95,
    }  # fmt: skip
    assert bc.run_score(reply, 40, "final") == 0.5
    assert bc.run_score(reply, 40, "best-checkpoint") == 0.3
    assert bc.run_score(reply, 10, "best-checkpoint") == 0.9
    assert bc.run_score(reply, 80, "final") == 1.2  # worse than the start: the start
    # diverged at step 95: the end of a 100-step run is the start; its best checkpoint is kept
    reply["val_losses"].append([100, float("nan")])
    assert bc.run_score(reply, 100, "final") == 1.2
    assert bc.run_score(reply, 100, "best-checkpoint") == 0.3
    with pytest.raises(ValueError, match="scoring must be one of"):
        bc.run_score(reply, 10, "mean")


def test_successive_halving_keeps_the_lr_with_the_lowest_loss_after_forty_steps() -> None:
    quality = _quality({})
    for index in br.HALVING_LRS:
        for seed in qc.SEEDS:
            losses = [2.0] * 40
            if index == 12:  # best early, worst late
                losses = [0.5] * 10 + [3.0] * 30
            if index == 16:
                losses = [1.0] * 10 + [0.9] * 30
            if index == 20:
                losses = [1.5] * 10 + [0.1] * 30
            if index == 24:
                losses = [math.nan] * 40
            key = f"train|constant|digits-mlp|{qc.lr_key(qc.GRID[index])}|{seed}"
            quality["jobs"][key]["train_losses"] = losses
    assert br.successive_halving(quality, "digits-mlp", 0) == qc.GRID[20]


def test_length_truth_interpolates_in_log_lr_and_reads_its_oracle() -> None:
    truth = br.LengthTruth(
        "t", 100, 1, [1e-3, 1e-2, 1e-1],
        {seed: [1.0, 0.5, 2.0] for seed in qc.SEEDS}, {seed: 2.0 for seed in qc.SEEDS},
        {seed: [0.9, 1.0, 2.0] for seed in bc.ORACLE_SEEDS}, 1e-3,
    )  # fmt: skip
    assert truth.best_lr == 1e-2
    assert truth.score(0, 10**-1.5) == pytest.approx(1.25)
    assert truth.score(0, None) == 2.0
    assert truth.regret({seed: 1e-2 for seed in qc.SEEDS}) == 0.0
    assert truth.oracle_regret() == pytest.approx(1.0)  # seeds 3-5 prefer 1e-3, which costs x2


def test_the_readme_table_is_the_one_the_committed_results_give() -> None:
    from benchmarks.budget_report import README_END, README_START, readme_with_table

    root = Path(__file__).resolve().parents[2]
    document = json.loads((root / "benchmarks/results/budget-rescored.json").read_text())
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme, document) == readme, (
        "README's table differs from benchmarks/results/budget-rescored.json: rerun "
        "python -m benchmarks.budget_rescore"
    )
    table = readme[readme.index(README_START) : readme.index(README_END)]
    assert "| for_length, length given |" in table or "so far: 0" in table


def test_the_default_rules_constants_are_the_committed_cross_validated_choice() -> None:
    from lr_widget.suggestions import length

    root = Path(__file__).resolve().parents[2]
    document = json.loads((root / "benchmarks/results/budget-rescored.json").read_text())
    part = document["scorings"][document["headline_scoring"]]
    family = f"family /{length.DIVISOR_AT_REFERENCE:g} x(N/100)^{length.LENGTH_EXPONENT:g}"
    assert part["selection"]["pick"] == family
    assert part["assumed_selection"]["pick"] == f"{family} assuming {length.ASSUMED_TRAIN_STEPS}"
    assert length.REFERENCE_STEPS == 100


def test_the_readme_describes_the_benchmark_the_code_runs() -> None:
    root = Path(__file__).resolve().parents[2]
    text = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    factors = ", ".join(f"{factor}x" for factor in bc.LENGTH_FACTORS[:-1])
    assert f"{factors} and {bc.LENGTH_FACTORS[-1]}x each task's base budget" in text
    longest = [bc.lengths_of(task.name)[-1] for task in tasks.TASKS]
    assert f"({bc.LENGTH_FACTORS[-1]}x is {min(longest):,}-{max(longest):,} steps)" in text
    assert f"{len(qc.SEEDS)} seeds, on {len(tasks.TASKS)} small real tasks" in text
    starts = [task.start for task in tasks.TASKS]
    assert f"{starts.count('fresh')} trained from scratch" in text
    assert f"{starts.count('fine-tune')} fine-tuning a body" in text
    assert f"{starts.count('mid-training')} resuming from a checkpoint" in text
    assert f"best checkpoint ({len(bc.CHECKPOINT_FACTORS)} of them" in text


def test_the_one_cycle_section_names_the_librarys_one_cycle_rule() -> None:
    from benchmarks.budget_report import ONE_CYCLE_RULE
    from lr_widget.suggestions.registry import SCHEDULE_RULES

    assert SCHEDULE_RULES["one-cycle"] == ONE_CYCLE_RULE


def _part_with(confirm: tuple[float, ...], alone: tuple[float, ...]) -> dict[str, Any]:
    def cell(value: float) -> dict[str, float]:
        return {"geo_mean": value, "within_10pct": 0, "count": 1}

    per_length = {
        str(factor): {"held_out": {
            "minimum + confirm (30-step probes)": cell(probe),
            "for_length, length given": cell(rule),
        }}
        for factor, probe, rule in zip(bc.LENGTH_FACTORS, confirm, alone, strict=True)
    }  # fmt: skip
    return {"per_length": {**per_length, "all": {"held_out": {}}}}


def test_the_confirm_verdict_needs_a_gain_at_every_length() -> None:
    from benchmarks.budget_report import confirm_verdict

    (better,) = confirm_verdict(_part_with((1.0, 1.0, 1.0), (1.1, 1.1, 1.1)))[:1]
    assert "better at every length, so confirm is worth its probes" in better
    (mixed,) = confirm_verdict(_part_with((1.0, 1.2, 1.0), (1.1, 1.1, 1.1)))[:1]
    assert "not better at every length" in mixed
    assert "6x x1.20 against x1.10" in mixed


def test_the_readmes_word_on_confirm_is_the_committed_verdict() -> None:
    from benchmarks.budget_report import confirm_verdict

    root = Path(__file__).resolve().parents[2]
    document = json.loads((root / "benchmarks/results/budget-rescored.json").read_text())
    verdict = confirm_verdict(document["scorings"][document["headline_scoring"]])[0]
    text = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    said = "it is not better at every length there, so the default alone is the recommended path"
    assert ("not better at every length" in verdict) == (said in text)
