"""Repeated runs, kept results and range selection of LRWidget in a real browser (issue 6).

One notebook per front end builds an ``LRWidget`` with ``repeats=3`` on the built-in demo (a
sweep of three short runs takes about a second). The tests check what the page draws (the band
as a filled ``path.area``, the kept run's line and legend entry) and drive the plot as a user
would: Keep is clicked, and in range mode a real mouse drag across the plot selects an LR range,
read back from the kernel. They share the notebook and run in file order; each starts the sweep
if none has run, so each also passes alone (``-k``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lr_widget.plotting.style import SMOOTHED_MEDIAN_LABEL, median_fit_label
from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget.controls import RANGE_BUTTON, SPREAD_CLASS, STATUS_CLASS
from lr_widget.widget.overlays import KEPT_PALETTE
from lr_widget.widget.plot import LR_RANGE_CLASS
from lr_widget.widget.widget import ROOT_CLASS

from .harness import JupyterServer, NotebookPage, open_notebook

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

REPEATS, NUM_STEPS = 3, 40
SWEEP_TIMEOUT_S = 180.0
ROOT = f".{ROOT_CLASS}"
STATUS = f"{ROOT} .{STATUS_CLASS}"
PLOT_AREA = f"{ROOT} rect.plotarea_events"

CELL = f"""\
from lr_widget.demo import make_demo
from lr_widget.widget import LRWidget

demo = make_demo(seed=0)
w = LRWidget(demo.model, demo.train_loader, demo.loss_fn, repeats={REPEATS},
             num_steps={NUM_STEPS}, autostart=False)
w
"""

# Every filled area of the figure with its fill colour and path length (legend swatches are
# not areas). bqplot draws a Lines mark with fill="between" as one ``path.area`` per row.
_AREAS_JS = """(root) => [...document.querySelector(root).querySelectorAll(
  '.bqplot.figure path.area')].map((path) => ({
    fill: getComputedStyle(path).fill, length: (path.getAttribute('d') || '').length}))"""

# Drawn lines (not legend swatches) with their stroke colour and point count.
_LINES_JS = """(root) => [...document.querySelector(root).querySelectorAll(
  '.bqplot.figure path.line')].filter((path) => !path.closest('.g_legend')).map((path) => ({
    stroke: getComputedStyle(path).stroke,
    points: ((path.getAttribute('d') || '').match(/[ML]/g) || []).length}))"""

_LEGEND_JS = """(root) => [...document.querySelector(root).querySelectorAll(
  '.lr-widget-legend span')].map((item) => item.textContent.trim())"""


_TAG_AT_JS = "([x, y]) => { const e = document.elementFromPoint(x, y); return e && e.tagName; }"


def _rgb(hex_color: str) -> str:
    red, green, blue = (int(hex_color[index : index + 2], 16) for index in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


@pytest.fixture(scope="module")
def band_page(
    browser: Browser, jupyter_server: JupyterServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NotebookPage]:
    """The notebook, opened, run and rendered once per front end (no sweep yet)."""
    artifacts = tmp_path_factory.mktemp(f"artifacts-band-{jupyter_server.app}")
    notebook = open_notebook(browser, jupyter_server, "band.ipynb", [CELL], artifacts)
    try:
        notebook.run_all_cells()
        notebook.wait_for_cells_done(timeout=120)
        notebook.wait_for_selector(f"{ROOT} .bqplot.figure", timeout=60)
        yield notebook
    finally:
        notebook.page.context.close()
        jupyter_server.delete_sessions()


@pytest.fixture
def notebook(band_page: NotebookPage, request: pytest.FixtureRequest) -> Iterator[NotebookPage]:
    """The shared page; on a failed test, its evidence is saved under the test's name."""
    yield band_page
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.failed:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        print(f"artifacts in {band_page.save_artifacts(f'on-failure-{label}')}")


def _button(notebook: NotebookPage, label: str) -> Any:
    return notebook.wait_for_selector(f'{ROOT} button:text-is("{label}"):not([disabled])')


def _finished_sweep(notebook: NotebookPage) -> None:
    """Make sure the repeated sweep has run to its end (click Run if it never ran)."""
    if notebook.kernel_eval("w.result is None"):
        _button(notebook, "Run").click()
    notebook.wait(
        lambda: notebook.kernel_eval("w.result is not None and not w.running"),
        "the repeated sweep to end",
        timeout=SWEEP_TIMEOUT_S,
    )


def test_the_band_and_a_kept_run_render(notebook: NotebookPage, tmp_path: Path) -> None:
    _finished_sweep(notebook)
    runs = notebook.kernel_eval("len(w.result.runs)")
    assert runs == REPEATS
    band_fill = _rgb(notebook.kernel_eval("w.plot.band.fill.colors[0]"))
    notebook.wait(
        lambda: any(
            area["fill"] == band_fill and area["length"] > 100
            for area in notebook.page.evaluate(_AREAS_JS, ROOT)
        ),
        "the band drawn as a filled path",
    )
    # the bold curve is the median of the runs' fits, the faded one the median moving average
    entries = (median_fit_label(REPEATS), SMOOTHED_MEDIAN_LABEL)
    notebook.wait(
        lambda: set(entries) <= set(notebook.page.evaluate(_LEGEND_JS, ROOT)), repr(entries)
    )
    folder = Path(os.environ.get("LR_WIDGET_BROWSER_SHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    notebook.page.locator(ROOT).screenshot(path=str(folder / "repeated-widget.png"))
    spread = notebook.kernel_eval(f"w.spreads[{DEFAULT_RULE!r}].describe()")
    spread_line = notebook.page.locator(f"{ROOT} .{SPREAD_CLASS}")
    try:
        notebook.wait(lambda: spread_line.inner_text().startswith(spread), f"the line {spread!r}")
    except TimeoutError:
        pytest.fail(f"the spread line reads {spread_line.inner_text()!r}, not {spread!r}...")

    _button(notebook, "Keep").click()
    label = notebook.wait(
        lambda: (notebook.kernel_eval("w.comparison.labels") or [None])[-1], "a kept result"
    )
    kept_stroke = _rgb(KEPT_PALETTE[len(notebook.kernel_eval("w.comparison.labels")) - 1])
    # kept: the curve its rules read, the median fit, which ends where the last fit does
    fitted = notebook.kernel_eval("int(__import__('numpy').isfinite(w.result.median).sum())")
    notebook.wait(
        lambda: any(
            line["stroke"] == kept_stroke and line["points"] == fitted
            for line in notebook.page.evaluate(_LINES_JS, ROOT)
        ),
        "the kept run's line",
    )
    notebook.wait(lambda: label in notebook.page.evaluate(_LEGEND_JS, ROOT), f"legend {label!r}")


def test_a_drag_in_range_mode_selects_a_range_and_clicks_work_again_after(
    notebook: NotebookPage,
) -> None:
    _finished_sweep(notebook)
    notebook.kernel_execute("w.lr_range = None\nw.lr = None")
    lrs: list[float] = notebook.kernel_eval("w.result.lrs.tolist()")
    low, high = notebook.kernel_eval("[w.plot.x_scale.min, w.plot.x_scale.max]")
    span = math.log10(high) - math.log10(low)

    def share(lr: float) -> float:
        return (math.log10(lr) - math.log10(low)) / span

    first, last = len(lrs) // 4, 3 * len(lrs) // 4
    expected = [lrs[first], lrs[last]]
    _button(notebook, RANGE_BUTTON).click()
    notebook.wait_for_selector(f"{ROOT} g.{LR_RANGE_CLASS}")

    box = notebook.box(PLOT_AREA)
    y = box["y"] + 0.5 * box["height"]
    x0, x1 = (box["x"] + share(lr) * box["width"] for lr in expected)
    mouse = notebook.page.mouse
    mouse.move(x0, y)
    mouse.down()
    for index in range(1, 11):  # a real drag: several moves, as a hand makes them
        mouse.move(x0 + (x1 - x0) * index / 10, y)
    mouse.up()

    # The brush reports the interval at every move; the last report, at mouse-up, decides.
    seen: list[Any] = []

    def range_is_expected() -> bool:
        seen.append(notebook.kernel_eval("w.lr_range"))
        return bool(seen[-1] == expected)

    try:
        notebook.wait(range_is_expected, "the dragged range in the kernel")
    except TimeoutError:
        pytest.fail(f"w.lr_range never became {expected}; the last values were {seen[-3:]}")
    label = f"range {expected[0]:.1e} – {expected[1]:.1e}"
    notebook.wait(lambda: label in notebook.page.locator(ROOT).inner_text(), repr(label))
    assert notebook.kernel_eval("w.lr") is None  # the drag selected a range, not an LR

    _button(notebook, RANGE_BUTTON).click()  # range mode off: a click picks an LR again
    notebook.page.wait_for_selector(f"{ROOT} g.{LR_RANGE_CLASS}", state="detached")
    box = notebook.box(PLOT_AREA)
    x = box["x"] + 0.5 * box["width"]
    heights = [box["y"] + share * box["height"] for share in (0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9)]
    y = next((h for h in heights if notebook.page.evaluate(_TAG_AT_JS, [x, h]) == "image"), None)
    assert y is not None, f"no height at x={x} where the click overlay is on top"
    notebook.page.mouse.click(x, y)
    assert notebook.wait(lambda: notebook.kernel_eval("w.lr"), "a clicked LR") in lrs
    assert notebook.kernel_eval("w.lr_range") == pytest.approx(expected, rel=1e-12)


def test_the_page_has_no_javascript_errors(notebook: NotebookPage) -> None:
    assert notebook.page_errors() == []
    assert notebook.page.locator(STATUS).inner_text().startswith("completed")
