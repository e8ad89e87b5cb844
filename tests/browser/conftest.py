"""Fixtures for real-browser tests: Chromium via Playwright, Jupyter servers, opened notebooks.

Fixtures
--------
``browser`` (package scope)
    A headless Playwright Chromium ``Browser`` on Debian's Chromium. Skipped when Chromium or
    Playwright is missing, unless ``LR_WIDGET_REQUIRE_BROWSER=1`` (CI), where that is a failure.
    Package scope, not session scope, on purpose: while Playwright's sync API is alive it marks
    its event loop as *running* in the main thread, so ``asyncio.run()`` fails in any other test;
    the browser therefore closes when pytest leaves ``tests/browser``.
``jupyter_app`` (module scope, parametrized ``"lab"``, ``"notebook"``)
    Which front end. Narrow it with
    ``@pytest.mark.parametrize("jupyter_app", ["lab"], indirect=True)``.
``jupyter_server`` (module scope)
    A :class:`~.harness.JupyterServer` for ``jupyter_app``, one per app per module. Its kernels
    see ``LR_WIDGET_TEST_OUTPUT_DIR`` (a folder the test can read). Sessions are deleted after
    each test that opened a notebook.
``jupyter_server_factory`` (function scope)
    ``start(app, env=None) -> JupyterServer`` for a test that needs its own kernel environment.
``open_notebook`` (function scope)
    ``open_notebook(cells, name=None, server=None) -> NotebookPage``: writes the cells, opens the
    notebook in a fresh browser context and waits for an idle kernel (on ``jupyter_server``, so a
    test using it runs once per front end). On test failure a screenshot, the page HTML, the
    console and the server log land in the test's ``tmp_path / "artifacts"``.
``kernel_output`` (function scope)
    A fresh JSON path inside ``LR_WIDGET_TEST_OUTPUT_DIR`` for the notebook to write to.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import harness
from .harness import CHROMIUM_ARGS, JupyterApp, JupyterServer, NotebookPage, find_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser

OUTPUT_DIR_VARIABLE = "LR_WIDGET_TEST_OUTPUT_DIR"


def _browser_required() -> bool:
    return os.environ.get("LR_WIDGET_REQUIRE_BROWSER") == "1"


def _unavailable(reason: str) -> None:
    if _browser_required():
        pytest.fail(f"{reason}, and LR_WIDGET_REQUIRE_BROWSER=1 makes that a failure")
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item so fixtures can tell whether the test failed.
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium for every test in this package (see the module docstring)."""
    executable = find_chromium()
    if executable is None:
        _unavailable(
            "Chromium is not installed (apt-get install chromium; or set LR_WIDGET_CHROMIUM)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module", params=["lab", "notebook"])
def jupyter_app(request: pytest.FixtureRequest) -> JupyterApp:
    """The front end under test: ``"lab"`` (JupyterLab 4) or ``"notebook"`` (Notebook 7)."""
    app: JupyterApp = request.param
    return app


@pytest.fixture(scope="module")
def jupyter_server(
    jupyter_app: JupyterApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """One server per front end per module; kernels see ``LR_WIDGET_TEST_OUTPUT_DIR``."""
    base = tmp_path_factory.mktemp(f"jupyter-{jupyter_app}")
    output_dir = base / "output"
    output_dir.mkdir()
    with harness.jupyter_server(
        jupyter_app, base, env={OUTPUT_DIR_VARIABLE: str(output_dir)}
    ) as server:
        yield server


@pytest.fixture
def jupyter_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., JupyterServer]]:
    """``start(app, env=None) -> JupyterServer``: a private server, stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(app: JupyterApp, env: Mapping[str, str] | None = None) -> JupyterServer:
            base = tmp_path_factory.mktemp(f"jupyter-{app}-own")
            return stack.enter_context(harness.jupyter_server(app, base, env=env))

        yield start


@pytest.fixture
def kernel_output(jupyter_server: JupyterServer, request: pytest.FixtureRequest) -> Path:
    """A JSON path, unique to this test, that the kernel can write (it does not exist yet)."""
    output_dir = Path(jupyter_server.kernel_env[OUTPUT_DIR_VARIABLE])
    path = output_dir / f"{_safe_name(request.node.name)}.json"
    path.unlink(missing_ok=True)
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80] or "test"


@pytest.fixture
def open_notebook(
    request: pytest.FixtureRequest,
    browser: Browser,
    jupyter_server: JupyterServer,
    tmp_path: Path,
) -> Iterator[Callable[..., NotebookPage]]:
    """``open_notebook(cells, name=None, server=None) -> NotebookPage``, opened and idle.

    The notebook runs on ``jupyter_server`` unless ``server`` is given (e.g. one from
    ``jupyter_server_factory``). Contexts are closed and sessions deleted afterwards; on failure,
    artifacts are saved under ``tmp_path / "artifacts"``.
    """
    opened: list[NotebookPage] = []

    def open_(
        cells: Sequence[str], name: str | None = None, server: JupyterServer | None = None
    ) -> NotebookPage:
        server = server or jupyter_server
        notebook_name = name or f"{_safe_name(request.node.name)}-{len(opened)}.ipynb"
        notebook = harness.open_notebook(
            browser, server, notebook_name, cells, tmp_path / "artifacts"
        )
        opened.append(notebook)
        return notebook

    yield open_

    report = getattr(request.node, "_report_call", None)
    for index, notebook in enumerate(opened):
        if report is not None and report.failed:
            folder = harness.save_artifacts(
                tmp_path / "artifacts",
                f"on-failure-{index}",
                notebook.page,
                notebook.server,
                notebook.console,
            )
            print(f"browser test failed; artifacts in {folder}")
        with contextlib.suppress(Exception):
            notebook.page.context.close()
        with contextlib.suppress(Exception):
            notebook.server.delete_sessions()
