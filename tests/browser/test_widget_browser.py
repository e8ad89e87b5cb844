"""LRWidget in a real browser, in JupyterLab 4 and Notebook 7 (issue 3).

One notebook per front end builds an ``LRWidget`` on the built-in demo with a ``step_fn`` that
sleeps a little per step, so a sweep lasts a few seconds: long enough to watch the curve grow and
to press Stop half way. Everything is driven as a user would (real clicks, a real hover) and
checked twice: on the page (what the user sees) and in the kernel (``kernel_eval``).

The tests share that notebook and run in file order; a test that needs a finished sweep starts
one if none has run, so each also passes alone (``-k``).

``LR_WIDGET_SCREENSHOT=docs/widget.png`` additionally saves a screenshot of the widget after a
sweep of the demo with default settings (JupyterLab only; relative paths are from the repository
root). Without it, that test is skipped and no repository file is written.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lr_widget.curves.axes import MAX_DRAWN_POINTS
from lr_widget.plotting.style import FIT_LABEL, RANGE_COLOR
from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget.clicks import TOOLTIP_CLASS
from lr_widget.widget.controls import STATUS_CLASS
from lr_widget.widget.widget import ROOT_CLASS

from .harness import REPO_ROOT, JupyterServer, NotebookPage, open_notebook

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

SCREENSHOT_VARIABLE = "LR_WIDGET_SCREENSHOT"
NUM_STEPS = 60
# Seconds each step sleeps: ~3 s per sweep, about 20 redraws at the default 0.15 s interval.
WATCH_DELAY_S = 0.04
# The sweep that gets stopped is slower, so a Stop click lands well before its end.
STOP_DELAY_S = 0.1
SWEEP_TIMEOUT_S = 180.0

ROOT = f".{ROOT_CLASS}"
STATUS = f"{ROOT} .{STATUS_CLASS}"
PLOT_AREA = f"{ROOT} rect.plotarea_events"
# [[brush left, brush right], [span left, span right]] in page pixels, or null before both show:
# the brush's rectangle and the shaded span of the selected range (the path filled with its
# colour).
_RANGE_EDGES_JS = """([root, color]) => {
    const scope = document.querySelector(root);
    const brush = scope?.querySelector("g.brushintsel rect.selection");
    const probe = document.createElement("div");
    probe.style.color = color;
    document.body.appendChild(probe);
    const fill = getComputedStyle(probe).color;
    probe.remove();
    const span = [...(scope?.querySelectorAll("path") || [])].find(
        (path) => getComputedStyle(path).fill === fill && path.getBoundingClientRect().width > 0
    );
    if (!brush || !span || brush.getBoundingClientRect().width === 0) return null;
    const a = brush.getBoundingClientRect(), b = span.getBoundingClientRect();
    return [[a.left, a.right], [b.left, b.right]];
}"""

SETUP_CELL = f"""\
import time

import torch

from lr_widget.demo import make_demo
from lr_widget.widget import LRWidget

step_delay_s = {WATCH_DELAY_S}
demo = make_demo(seed=0)
optimizer = torch.optim.AdamW(demo.model.parameters(), lr=1e-3)
original_weights = {{name: value.clone() for name, value in demo.model.state_dict().items()}}


def slow_step(model, batch):
    time.sleep(step_delay_s)  # slow enough to watch the curve grow and to press Stop
    inputs, targets = batch
    return demo.loss_fn(model(inputs), targets)


def weights_restored():
    state = demo.model.state_dict()
    return state.keys() == original_weights.keys() and all(
        torch.equal(state[name], value) for name, value in original_weights.items()
    )
"""

WIDGET_CELL = f"""\
w = LRWidget(demo.model, demo.train_loader, optimizer=optimizer, step_fn=slow_step,
             num_steps={NUM_STEPS}, autostart=False)
w
"""

# Shared JS: the widget's root, and the point count of the longest curve (legend swatches are
# lines too, hence the filter). A curve's ``d`` is "M x,y L x,y ...": one command per point.
_CURVE_POINTS_JS = """
const curvePoints = (root) => {
  let most = 0;
  for (const path of root.querySelectorAll('.bqplot.figure path.line')) {
    if (path.closest('.g_legend')) continue;
    most = Math.max(most, ((path.getAttribute('d') || '').match(/[ML]/g) || []).length);
  }
  return most;
};
"""

# Samples (curve points, status text) every 25 ms in the page itself, so a busy test process
# cannot miss redraws.
_START_SAMPLER_JS = (
    "([root, status]) => {"
    + _CURVE_POINTS_JS
    + " window.lrSamples = []; const element = document.querySelector(root);"
    " window.lrSampler = setInterval(() => window.lrSamples.push({points: curvePoints(element),"
    " status: document.querySelector(status).innerText}), 25); }"
)
_STOP_SAMPLER_JS = "() => { clearInterval(window.lrSampler); return window.lrSamples; }"

# The centre of hover point ``index`` (the mark right after the overlay image) and whether it
# is the topmost element there (the legend, drawn last, may cover a point).
_HOVER_POINT_JS = """([root, index]) => {
  const image = document.querySelector(root + ' .bqplot.figure image');
  const dots = image.parentElement.nextElementSibling.querySelectorAll('path.dot');
  const dot = dots[index];
  if (!dot) return {count: dots.length};
  const box = dot.getBoundingClientRect();
  const x = box.x + box.width / 2, y = box.y + box.height / 2;
  return {count: dots.length, x, y, on_top: document.elementFromPoint(x, y) === dot};
}"""

# The quickstart's widget: the demo with default settings.
SCREENSHOT_CELLS = [
    "import torch\n\nfrom lr_widget import LRWidget\nfrom lr_widget.demo import make_demo\n\n"
    "demo = make_demo(seed=0)",
    "w = LRWidget(demo.model, demo.train_loader, demo.loss_fn)\nw",
]

_TAG_AT_JS = "([x, y]) => { const e = document.elementFromPoint(x, y); return e && e.tagName; }"


@pytest.fixture(scope="module")
def widget_page(
    browser: Browser, jupyter_server: JupyterServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NotebookPage]:
    """The widget notebook, opened, run and rendered once per front end (no sweep yet)."""
    artifacts = tmp_path_factory.mktemp(f"artifacts-widget-{jupyter_server.app}")
    notebook = open_notebook(
        browser, jupyter_server, "widget.ipynb", [SETUP_CELL, WIDGET_CELL], artifacts
    )
    try:
        notebook.run_all_cells()
        notebook.wait_for_cells_done(timeout=120)
        notebook.wait_for_selector(f"{ROOT} .bqplot.figure", timeout=60)
        notebook.wait_for_function(
            "(status) => document.querySelector(status)?.innerText.startsWith('ready')",
            what="the widget's status line to say it is ready",
            arg=STATUS,
        )
        yield notebook
    finally:
        notebook.page.context.close()
        jupyter_server.delete_sessions()


@pytest.fixture
def notebook(widget_page: NotebookPage, request: pytest.FixtureRequest) -> Iterator[NotebookPage]:
    """The shared widget page; on a failed test, its evidence is saved under the test's name."""
    yield widget_page
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.failed:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        print(f"artifacts in {widget_page.save_artifacts(f'on-failure-{label}')}")


def _status(notebook: NotebookPage) -> str:
    text: str = notebook.page.locator(STATUS).inner_text()
    return text


def _wait_for_sweep_end(notebook: NotebookPage) -> str:
    """Wait until the status line shows how the sweep ended and the kernel agrees; return it."""
    notebook.wait_for_function(
        "(status) => { const text = document.querySelector(status)?.innerText || '';"
        " return text && !text.startsWith('ready') && !text.startsWith('running'); }",
        what="the status line to show the end of the sweep",
        timeout=SWEEP_TIMEOUT_S,
        arg=STATUS,
    )
    notebook.wait(lambda: notebook.kernel_eval("not w.running"), "the kernel to see the end")
    return _status(notebook)


def _enabled_button(notebook: NotebookPage, label: str) -> Any:
    """The widget's button labelled exactly ``label``, once it is enabled."""
    # Not get_by_role: the buttons' tooltips (title) become their accessible names.
    return notebook.wait_for_selector(f'{ROOT} button:text-is("{label}"):not([disabled])')


def _finished_sweep(notebook: NotebookPage) -> None:
    """Make sure a sweep has run to its end (run one if none has)."""
    if notebook.kernel_eval("w.result is None or w.running"):
        if notebook.kernel_eval("w.result is None"):
            _enabled_button(notebook, "Run").click()
        _wait_for_sweep_end(notebook)
    notebook.kernel_execute("w.lr = None")  # each test's selection starts from nothing


def _wait_for_lr(notebook: NotebookPage) -> float:
    lr: float = notebook.wait(lambda: notebook.kernel_eval("w.lr"), "a selection in the kernel")
    return lr


def test_the_curve_grows_while_the_sweep_runs(notebook: NotebookPage) -> None:
    notebook.page.evaluate(_START_SAMPLER_JS, [ROOT, STATUS])
    _enabled_button(notebook, "Run").click()
    status = _wait_for_sweep_end(notebook)
    notebook.page.wait_for_timeout(500)  # let the sampler see the final drawing
    samples = notebook.page.evaluate(_STOP_SAMPLER_JS)

    reason, recorded = notebook.kernel_eval("[str(w.result.stop_reason), len(w.result.lrs)]")
    assert status.startswith(reason)
    during = [sample["points"] for sample in samples if sample["status"].startswith("running")]
    # The final drawing goes out just before the status changes, so it may be among these.
    partial = sorted({points for points in during if 0 < points < recorded})
    summary = f"{len(samples)} samples; point counts while running: {sorted(set(during))}"
    assert len(partial) >= 3, summary  # several distinct redraws before the end
    assert during == sorted(during), summary  # the curve only grows
    assert samples[-1]["points"] == recorded, summary  # the final state is drawn


def test_a_click_between_points_selects_the_nearest_recorded_lr(notebook: NotebookPage) -> None:
    _finished_sweep(notebook)
    lrs: list[float] = notebook.kernel_eval("list(w.result.lrs)")
    low, high = notebook.kernel_eval("[w.plot.x_scale.min, w.plot.x_scale.max]")
    span = math.log10(high) - math.log10(low)
    shares = [(math.log10(lr) - math.log10(low)) / span for lr in lrs]

    # A quarter of the way from the recorded LR nearest the middle of the axis to the next:
    # both the nearest point and the half-way mark are then ~3.5 px away (60 points over
    # ~870 px), ample for the overlay's ~1 px inset and for rounding to whole pixels.
    middle = min(range(len(lrs) - 1), key=lambda index: abs(shares[index] - 0.5))
    fraction = shares[middle] + 0.25 * (shares[middle + 1] - shares[middle])
    click_x = 10 ** (math.log10(low) + fraction * span)
    expected = min(lrs, key=lambda lr: abs(math.log10(lr) - math.log10(click_x)))
    assert expected == lrs[middle]  # the test's own arithmetic

    box = notebook.box(PLOT_AREA)
    x = box["x"] + fraction * box["width"]
    # A height where nothing but the overlay is under the pointer (not a hover point).
    heights = (0.5, 0.25, 0.75, 0.1, 0.9, 0.4, 0.6)
    y = next(
        (
            box["y"] + share * box["height"]
            for share in heights
            if notebook.page.evaluate(_TAG_AT_JS, [x, box["y"] + share * box["height"]]) == "image"
        ),
        None,
    )
    assert y is not None, f"no height at x={x} where the overlay is on top"
    notebook.page.mouse.click(x, y)

    assert _wait_for_lr(notebook) == expected
    label = f"selected LR {expected:.3e}"
    notebook.wait(lambda: label in notebook.page.locator(ROOT).inner_text(), f"the label {label!r}")


def test_hovering_a_point_shows_its_lr_and_loss_and_a_click_selects_it(
    notebook: NotebookPage,
) -> None:
    _finished_sweep(notebook)
    xs, ys = notebook.kernel_eval(
        "[w.plot.hover_points.x.tolist(), w.plot.hover_points.y.tolist()]"
    )
    count = len(xs)
    for index in (count // 2, count // 3, 2 * count // 3, count // 4, 3 * count // 4):
        point = notebook.page.evaluate(_HOVER_POINT_JS, [ROOT, index])
        assert point["count"] == count
        if point["on_top"]:
            break
    else:
        raise AssertionError("every candidate hover point is covered by another element")

    notebook.page.mouse.move(point["x"], point["y"])
    tooltip = notebook.wait_for_selector(f".{TOOLTIP_CLASS}")
    rows = dict(
        tooltip.evaluate(
            "(e) => [...e.querySelectorAll('tr')].map((row) =>"
            " [...row.querySelectorAll('td')].map((cell) => cell.innerText.trim()))"
        )
    )
    assert set(rows) == {"lr", "loss"}
    assert float(rows["lr"]) == pytest.approx(xs[index], rel=5e-3)  # format .2e
    assert float(rows["loss"]) == pytest.approx(ys[index], rel=5e-4)  # format .4g

    notebook.page.mouse.click(point["x"], point["y"])
    assert _wait_for_lr(notebook) == xs[index]  # exactly that point

    notebook.page.mouse.move(1, 1)
    notebook.wait(lambda: not tooltip.is_visible(), "the tooltip to hide when the pointer leaves")


def test_a_range_drag_leaves_one_rectangle_on_the_snapped_range(notebook: NotebookPage) -> None:
    """The brush's own rectangle moves onto the shaded span of the range snapped to recorded
    LRs when the mouse is released: one rectangle, not two offset ones."""
    _finished_sweep(notebook)
    notebook.kernel_execute("w.lr_range = None")
    toggle = notebook.wait_for_selector(f'{ROOT} button:text-is("Select range")')
    toggle.click()
    notebook.wait(lambda: notebook.kernel_eval("w.plot.range_mode"), "range mode in the kernel")
    box = notebook.box(PLOT_AREA)
    y = box["y"] + 0.5 * box["height"]
    notebook.page.mouse.move(box["x"] + 0.303 * box["width"], y)
    notebook.page.mouse.down()
    notebook.page.mouse.move(box["x"] + 0.45 * box["width"], y, steps=5)
    notebook.page.mouse.move(box["x"] + 0.617 * box["width"], y, steps=5)
    notebook.page.mouse.up()
    notebook.wait(lambda: notebook.kernel_eval("w.lr_range"), "a range in the kernel")

    def edges() -> list[list[float]] | None:
        found: list[list[float]] | None = notebook.page.evaluate(
            _RANGE_EDGES_JS, [ROOT, RANGE_COLOR]
        )
        return found

    def one_rectangle() -> bool:
        found = edges()
        return found is not None and all(
            abs(brush - span) < 1.0 for brush, span in zip(found[0], found[1], strict=True)
        )

    notebook.wait(one_rectangle, f"the brush on the shaded span (brush, span: {edges()})")
    toggle.click()  # back to clicking, for the tests that follow
    notebook.wait(lambda: not notebook.kernel_eval("w.plot.range_mode"), "click mode again")
    assert notebook.drawing_errors() == []


def test_a_suggestion_button_selects_its_lr(notebook: NotebookPage) -> None:
    _finished_sweep(notebook)
    expected = notebook.kernel_eval(f"w.suggestions[{DEFAULT_RULE!r}].lr")
    assert expected is not None
    _enabled_button(notebook, DEFAULT_RULE).click()
    assert _wait_for_lr(notebook) == expected


def test_stop_mid_sweep_ends_it_and_restores_the_weights(notebook: NotebookPage) -> None:
    _finished_sweep(notebook)
    notebook.kernel_execute(f"step_delay_s = {STOP_DELAY_S}")
    try:
        _enabled_button(notebook, "Run").click()
        # The progress text still shows the last sweep until this one starts; the sweep clears
        # it before it says "running", and the page gets both in that order.
        notebook.wait_for_function(
            "([root, status]) => { const running = document.querySelector(status).innerText"
            ".startsWith('running'); const match = /step (\\d+)\\//.exec("
            "document.querySelector(root).innerText);"
            " return running && match && Number(match[1]) >= 5; }",
            what="the new sweep to pass step 5",
            timeout=SWEEP_TIMEOUT_S,
            arg=[ROOT, STATUS],
        )
        _enabled_button(notebook, "Stop").click()
        status = _wait_for_sweep_end(notebook)
    finally:
        notebook.kernel_execute(f"step_delay_s = {WATCH_DELAY_S}")

    assert status.startswith("stopped")
    reason, steps, restored, lr = notebook.kernel_eval(
        "[str(w.result.stop_reason), len(w.result.lrs), weights_restored(),"
        " optimizer.param_groups[0]['lr']]"
    )
    assert reason == "stopped"
    assert 5 <= steps < NUM_STEPS
    assert restored is True
    assert lr == 1e-3


# Every curve on the plot (legend swatches left out): its point count, whether it is dashed and
# its opacity as drawn; and the legend's labels.
_CURVES_AND_LEGEND_JS = (
    "(root) => { const element = document.querySelector(root); const curves = [];"
    " for (const path of element.querySelectorAll('.bqplot.figure path.line')) {"
    " if (path.closest('.g_legend')) continue; const style = getComputedStyle(path);"
    " curves.push({points: ((path.getAttribute('d') || '').match(/[ML]/g) || []).length,"
    " dashed: !['none', ''].includes(style.strokeDasharray), opacity: Number(style.opacity)}); }"
    " const labels = [...element.querySelectorAll('.lr-widget-legend span')]"
    ".map((item) => item.textContent.trim()); return {curves, labels}; }"
)


def test_the_lag_free_fit_is_the_bold_curve_once_the_sweep_ends(notebook: NotebookPage) -> None:
    _finished_sweep(notebook)
    recorded, fitted = notebook.kernel_eval(
        "[len(w.result.lrs), sum(1 for y in w.plot.fit_line.y if y == y)]"  # y == y: not NaN
    )
    assert 0 < fitted <= recorded

    def fit_in_legend() -> dict[str, Any] | None:
        found: dict[str, Any] = notebook.page.evaluate(_CURVES_AND_LEGEND_JS, ROOT)
        return found if FIT_LABEL in found["labels"] else None

    drawn = notebook.wait(fit_in_legend, f"the legend entry {FIT_LABEL!r}")
    solid = [c for c in drawn["curves"] if not c["dashed"] and c["opacity"] == 1]
    faded = [c for c in drawn["curves"] if c["dashed"] and c["opacity"] < 1]
    assert any(curve["points"] == fitted for curve in solid), drawn  # the fit, drawn bold
    assert any(curve["points"] == recorded for curve in faded), drawn  # the EMA beside it


# The answer on the plot (its SVG label), the legend's box and the plot area's, in page pixels.
_ANSWER_AND_BOXES_JS = (
    "(root) => { const element = document.querySelector(root);"
    " const box = (node) => { if (!node) return null; const r = node.getBoundingClientRect();"
    " return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };"
    " const labels = [...element.querySelectorAll('.bqplot.figure text')]"
    ".map((text) => text.textContent.trim()).filter((text) => text.startsWith('suggested '));"
    " return {labels, legend: box(element.querySelector('.lr-widget-legend')),"
    " plot: box(element.querySelector('.bqplot.figure .plotarea_background')),"
    " answer: element.querySelector('.lr-widget-answer')?.innerText || ''}; }"
)


def test_the_default_is_labelled_on_the_plot_and_the_legend_stays_off_it(
    notebook: NotebookPage,
) -> None:
    _finished_sweep(notebook)
    if notebook.kernel_eval("w.result.suggestion.lr is None"):  # a sweep stopped early before
        notebook.kernel_execute("w.run()")
        notebook.wait(
            lambda: notebook.kernel_eval("not w.running and w.result.suggestion.lr is not None"),
            "a full sweep with a suggestion",
            timeout=SWEEP_TIMEOUT_S,
        )
    lr = notebook.kernel_eval("w.result.suggestion.lr")
    expected = f"suggested {lr:.1e}"

    def shown() -> dict[str, Any] | None:
        found: dict[str, Any] = notebook.page.evaluate(_ANSWER_AND_BOXES_JS, ROOT)
        return found if expected in found["labels"] and found["legend"] else None

    found = notebook.wait(shown, f"the label {expected!r} on the plot")
    assert found["answer"].startswith(expected), found["answer"]  # and in words under it
    legend, plot = found["legend"], found["plot"]
    assert plot is not None
    overlaps = (
        legend["left"] < plot["right"] and plot["left"] < legend["right"]
        and legend["top"] < plot["bottom"] and plot["top"] < legend["bottom"]
    )  # fmt: skip
    assert not overlaps, found


def test_the_console_has_no_errors_or_warnings_from_drawing(notebook: NotebookPage) -> None:
    """SVG attribute errors ("<rect> attribute width: A negative value", "transform: Trailing
    garbage") are console errors, not page errors: every sweep drawn so far counts."""
    _finished_sweep(notebook)
    assert notebook.drawing_errors() == []


LONG_STEPS = 10_000
# A step at full speed (no sleep): Stop is pressed once this many steps are on the page, far
# past the drawn-point cap, with thousands of steps still to run.
LONG_STOP_AT = 3_000
LONG_SWEEP_CELLS = [
    "import math\n\nfrom lr_widget.demo import make_demo\nfrom lr_widget.widget import LRWidget\n\n"
    "demo = make_demo(seed=0)",
    f"w = LRWidget(demo.model, demo.train_loader, demo.loss_fn, num_steps={LONG_STEPS},\n"
    "             start_lr=1e-6, end_lr=1e-2, diverge_factor=math.inf, autostart=False)\nw",
]


def test_a_10000_step_sweep_draws_a_bounded_curve_and_the_page_stays_responsive(
    browser: Browser, jupyter_server: JupyterServer, tmp_path: Path
) -> None:
    """Thousands of steps in: the drawn curve stays within the point cap on the page, a Stop
    click still reaches the kernel mid-sweep, and the result keeps every step (Lab only: the
    front ends share the widget's code)."""
    if jupyter_server.app != "lab":
        pytest.skip("the long sweep is checked in JupyterLab")
    name = "long-sweep.ipynb"
    jupyter_server.write_notebook(name, LONG_SWEEP_CELLS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        notebook = NotebookPage(
            page=context.new_page(), server=jupyter_server, name=name,
            artifacts_dir=tmp_path / "artifacts",
        ).open()  # fmt: skip
        notebook.run_all_cells()
        notebook.wait_for_cells_done(timeout=120)
        notebook.wait_for_selector(f"{ROOT} .bqplot.figure", timeout=60)
        notebook.page.evaluate(_START_SAMPLER_JS, [ROOT, STATUS])
        _enabled_button(notebook, "Run").click()
        notebook.wait_for_function(
            "([root, least]) => { const match = /step (\\d+)\\//.exec("
            "document.querySelector(root).innerText); return match && Number(match[1]) >= least; }",
            what=f"the sweep to pass step {LONG_STOP_AT}",
            timeout=SWEEP_TIMEOUT_S,
            arg=[ROOT, LONG_STOP_AT],
        )
        _enabled_button(notebook, "Stop").click()
        status = _wait_for_sweep_end(notebook)
        notebook.page.wait_for_timeout(500)  # let the sampler see the final drawing
        samples = notebook.page.evaluate(_STOP_SAMPLER_JS)
        reason, steps, drawn_raw = notebook.kernel_eval(
            "[str(w.result.stop_reason), len(w.result.lrs), len(w.plot.raw_line.x)]"
        )
        errors = notebook.page_errors()
    finally:
        context.close()
        jupyter_server.delete_sessions()

    assert status.startswith("stopped"), status
    assert reason == "stopped"
    assert LONG_STOP_AT <= steps < LONG_STEPS  # the click landed while thousands of steps ran
    cap = MAX_DRAWN_POINTS + 2  # the envelope keeps each end too
    assert drawn_raw <= cap < steps  # the kernel sent the envelope, the result kept every step
    points = [sample["points"] for sample in samples]
    running = [sample for sample in samples if sample["status"].startswith("running")]
    assert running, f"{len(samples)} samples, none while the sweep ran"
    assert 0 < max(points) <= cap, sorted(set(points))  # what the page drew, every time
    assert errors == []


def test_the_page_has_no_javascript_errors(notebook: NotebookPage) -> None:
    assert notebook.page_errors() == []


def test_screenshot_of_the_demo_widget(
    browser: Browser, jupyter_server: JupyterServer, tmp_path: Path
) -> None:
    """Opt-in: ``LR_WIDGET_SCREENSHOT=docs/widget.png`` saves the docs picture (Lab only)."""
    target = os.environ.get(SCREENSHOT_VARIABLE)
    if not target:
        pytest.skip(f"set {SCREENSHOT_VARIABLE}=docs/widget.png to save the screenshot")
    if jupyter_server.app != "lab":
        pytest.skip("the screenshot is taken in JupyterLab")
    path = Path(target) if Path(target).is_absolute() else REPO_ROOT / target
    name = "screenshot.ipynb"
    jupyter_server.write_notebook(name, SCREENSHOT_CELLS)
    # Twice the pixels (the harness's pages have one per CSS pixel): sharp on dense screens.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=2)
    try:
        notebook = NotebookPage(
            page=context.new_page(),
            server=jupyter_server,
            name=name,
            artifacts_dir=tmp_path / "artifacts",
        ).open()
        notebook.run_all_cells()
        notebook.wait_for_cells_done(timeout=120)
        _wait_for_sweep_end(notebook)
        _enabled_button(notebook, DEFAULT_RULE).click()
        _wait_for_lr(notebook)
        notebook.page.evaluate("() => document.activeElement?.blur()")
        notebook.page.mouse.move(1, 1)  # no hover: no toolbar, no tooltip
        notebook.page.wait_for_timeout(500)
        path.parent.mkdir(parents=True, exist_ok=True)
        notebook.page.locator(ROOT).screenshot(path=str(path), animations="disabled")
    finally:
        context.close()
        jupyter_server.delete_sessions()
    assert path.stat().st_size > 10_000
