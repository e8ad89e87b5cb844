"""The browser harness works end to end in JupyterLab 4 and Notebook 7.

One notebook per front end shows an ipywidgets Button that counts clicks and a bqplot Figure
(a Lines mark on a LogScale 1e-6..1 x-axis, plus a transparent Image overlay that reports where it
was clicked, as GROUNDWORK section 2 describes). Real Playwright clicks must reach the kernel, and
a click half way across the plot must come back as ``click_x`` = 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import OUTPUT_DIR_VARIABLE
from .harness import (
    JupyterServer,
    NotebookCellError,
    NotebookPage,
    WaitTimeoutError,
    json_writer_source,
    open_notebook,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

DEMO_CELL = """\
import struct
import zlib

import bqplot as bq
import ipywidgets as widgets
import numpy as np
from IPython.display import display


def transparent_png():
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1 RGBA
    return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\\x00" * 5)) + chunk(b"IEND", b""))


state = {"button_clicks": 0, "plot_clicks": []}


def on_button_click(_button):
    state["button_clicks"] += 1
    write_json(button_clicks=state["button_clicks"])


def on_overlay_click(_mark, content):
    state["plot_clicks"].append(content["data"])
    write_json(plot_clicks=state["plot_clicks"])


button = widgets.Button(description="Count click")
button.on_click(on_button_click)

x_scale = bq.LogScale(min=1e-6, max=1.0)
y_scale = bq.LinearScale(min=0.0, max=1.0)
scales = {"x": x_scale, "y": y_scale}
lrs = np.logspace(-6, 0, 60)
line = bq.Lines(x=lrs, y=np.linspace(0.9, 0.1, 60), scales=scales)
overlay = bq.Image(
    image=widgets.Image(value=transparent_png(), format="png"),
    x=[1e-6, 1.0], y=[0.0, 1.0], scales=scales,
)
overlay.on_element_click(on_overlay_click)
figure = bq.Figure(
    marks=[line, overlay],
    axes=[bq.Axis(scale=x_scale, tick_format=".0e"),
          bq.Axis(scale=y_scale, orientation="vertical")],
    animation_duration=0,
    layout=widgets.Layout(width="640px", height="400px"),
)
display(button, figure)
write_json(ready=True)
"""


@pytest.fixture(scope="module")
def demo(
    browser: Browser, jupyter_server: JupyterServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NotebookPage, Path]]:
    """The demo notebook, opened and run once per front end; yields it and its JSON path."""
    output = Path(jupyter_server.kernel_env[OUTPUT_DIR_VARIABLE]) / "demo.json"
    artifacts = tmp_path_factory.mktemp(f"artifacts-{jupyter_server.app}")
    notebook = open_notebook(
        browser, jupyter_server, "demo.ipynb", [json_writer_source(output), DEMO_CELL], artifacts
    )
    try:
        notebook.run_all_cells()
        notebook.wait_for_cells_done(timeout=60)
        notebook.wait_for_json(output, lambda value: value.get("ready") is True)
        yield notebook, output
    finally:
        notebook.page.context.close()
        jupyter_server.delete_sessions()


def test_figure_renders_line_and_overlay(demo: tuple[NotebookPage, Path]) -> None:
    notebook, _ = demo
    notebook.wait_for_selector(".bqplot.figure")
    notebook.wait_for_selector(".bqplot.figure path.line")
    notebook.wait_for_selector(".bqplot.figure image")
    box = notebook.box("rect.plotarea_events")
    assert box["width"] > 300
    assert box["height"] > 100


def test_button_click_reaches_kernel(demo: tuple[NotebookPage, Path]) -> None:
    notebook, output = demo
    before = notebook.wait_for_json(output).get("button_clicks", 0)
    notebook.wait_for_selector('button:has-text("Count click")').click()
    after = notebook.wait_for_json(output, lambda value: value.get("button_clicks", 0) > before)
    assert after["button_clicks"] == before + 1


def test_click_half_way_on_log_axis_reports_1e_minus_3(demo: tuple[NotebookPage, Path]) -> None:
    notebook, output = demo
    notebook.wait_for_selector(".bqplot.figure path.line")
    before = len(notebook.wait_for_json(output).get("plot_clicks", []))
    notebook.click_at_fraction("rect.plotarea_events", 0.5, 0.5)
    value = notebook.wait_for_json(output, lambda v: len(v.get("plot_clicks", [])) > before)
    click: dict[str, Any] = value["plot_clicks"][-1]
    # One pixel of the 520 px wide, 6-decade axis is 0.012 decades: allow about 2.5 pixels.
    assert math.log10(click["click_x"]) == pytest.approx(-3.0, abs=0.03)
    assert click["click_y"] == pytest.approx(0.5, abs=0.02)


def test_kernel_eval_reads_state_and_inherited_environment(
    demo: tuple[NotebookPage, Path], jupyter_server: JupyterServer
) -> None:
    notebook, _ = demo
    assert notebook.kernel_eval("sorted(state)") == ["button_clicks", "plot_clicks"]
    output_dir = notebook.kernel_eval(f"__import__('os').environ[{OUTPUT_DIR_VARIABLE!r}]")
    assert output_dir == jupyter_server.kernel_env[OUTPUT_DIR_VARIABLE]
    notebook.kernel_execute("harness_probe = {'answer': 42}")
    assert notebook.kernel_eval("harness_probe") == {"answer": 42}


def test_page_has_no_unexpected_javascript_errors(demo: tuple[NotebookPage, Path]) -> None:
    notebook, _ = demo
    assert notebook.page_errors() == []


def test_kernel_eval_raises_with_kernel_traceback(demo: tuple[NotebookPage, Path]) -> None:
    notebook, _ = demo
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        notebook.kernel_eval("1 / 0")


def test_failed_wait_saves_screenshot_and_server_log(demo: tuple[NotebookPage, Path]) -> None:
    notebook, _ = demo
    with pytest.raises(WaitTimeoutError, match="artifacts") as raised:
        notebook.wait_for_selector(".no-such-element", timeout=0.5)
    folder = raised.value.artifacts
    assert folder is not None
    assert str(folder) in str(raised.value)
    assert (folder / "screenshot.png").stat().st_size > 0
    assert "127.0.0.1" in (folder / "server.log").read_text()


def test_open_notebook_runs_cells_until_one_raises(
    open_notebook: Callable[..., NotebookPage], kernel_output: Path
) -> None:
    notebook = open_notebook(
        [json_writer_source(kernel_output), "write_json(answer=6 * 7)", "1 / 0", "write_json(x=1)"]
    )
    notebook.run_all_cells()
    with pytest.raises(NotebookCellError, match=r"cell 2 .*ZeroDivisionError") as raised:
        notebook.wait_for_cells_done()
    assert "1 / 0" in str(raised.value)  # the traceback
    assert "\x1b[" not in str(raised.value)  # without ANSI colour codes
    # Whether the cell after the error runs is the kernel's timing, not the harness's: ipykernel
    # aborts only the requests already queued when the error happens (under load, CI once saw
    # the last cell run). The cells before it ran.
    assert notebook.wait_for_json(kernel_output)["answer"] == 42


def test_server_factory_passes_environment_to_kernels(
    jupyter_server_factory: Callable[..., JupyterServer],
) -> None:
    server = jupyter_server_factory("lab", env={"LR_WIDGET_HARNESS_PROBE": "hello"})
    server.start_session("probe.ipynb")
    probe = "__import__('os').environ.get('LR_WIDGET_HARNESS_PROBE')"
    assert server.kernel_eval("probe.ipynb", probe, timeout=60) == "hello"
