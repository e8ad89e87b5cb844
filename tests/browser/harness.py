"""Drive a real Jupyter front end (JupyterLab 4 or Notebook 7) in headless Chromium.

The pieces, smallest first:

- :func:`jupyter_server` starts ``jupyter lab`` or ``jupyter notebook`` in a private temporary
  world (config, data, runtime, IPython and settings dirs, a random token, a free port on
  127.0.0.1) and stops it cleanly. The kernel inherits the server's environment, so ``env=`` is
  how a test hands a kernel an output path. The repository root is put first on the kernel's
  ``PYTHONPATH`` so notebooks import the working tree's ``lr_widget`` even when it is not installed.
- :class:`JupyterServer` talks to the running server over REST: write notebooks into its root,
  list and delete sessions, and :meth:`JupyterServer.kernel_eval` evaluates a Python expression in
  a notebook's live kernel and returns its JSON value (jupyter_client on the kernel's connection
  file, a *silent* execution, so the page sees no new cell output and no execution count).
- :class:`NotebookPage` drives one notebook in one Playwright page: open it, wait for the kernel,
  run every cell and wait for them (a cell error fails at once with its traceback), wait for
  selectors, click at a fraction of an element's box, and wait for JSON the notebook writes
  (:func:`wait_for_json`; :func:`json_writer_source` gives the notebook a ``write_json``). Every
  wait has a timeout; when one runs out, a screenshot, the page HTML, the browser console and the
  server log are saved to the test's artifact folder, and the error names it (``.artifacts``).

Notebook 7 versus JupyterLab 4 (both checked with Chromium 156, Lab 4.6.6, Notebook 7.6.5):

- ``window.jupyterapp`` exists in Notebook 7 too; the switch is
  ``--JupyterNotebookApp.expose_app_in_browser=True`` (``LabApp`` options do not apply to it).
  ``notebook:run-all-cells`` and ``shell.currentWidget.sessionContext`` then work as in Lab, so
  no keyboard or menu driving is needed.
- The notebook URL differs: ``/lab/tree/NAME`` in Lab, ``/notebooks/NAME`` in Notebook 7.
- The settings and workspaces dirs are ``JupyterNotebookApp.user_settings_dir`` /
  ``workspaces_dir``; the same ``fetchNews`` settings file silences the news toast in both.
- Notebook 7.6.5 throws one uncaught page error on every load, ``Cannot read properties of
  undefined (reading 'schema')`` (its keyboard-shortcuts settings handler, in
  ``notebook_core.*.js``), with ``[yjs#509] Not same Y.Doc`` warnings. It happens with a bare
  ``1+1`` notebook and without any of our options, and nothing breaks;
  :meth:`NotebookPage.page_errors` leaves it out (see ``KNOWN_PAGE_ERRORS``).
- Lab only: ``--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate`` (no network).

Everything else (widget rendering, bqplot, the overlay Image click reporting ``click_x`` through a
LogScale: 25 % and 50 % of the plot width gave 3.12e-5 and 1.000e-3) is identical in the two.
Clicks exactly on the plot-area edge miss: the Image mark is inset by about one pixel.

Caveat for test authors: while Playwright's sync API is alive it marks its asyncio loop as
*running* in the main thread, so ``asyncio.run()`` raises in the same thread (``jupyter_core``'s
``run_sync``, used by jupyter_client, copes). The fixtures close the browser when pytest leaves
``tests/browser``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import nbformat

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

__all__ = [
    "CHROMIUM_ARGS",
    "KNOWN_PAGE_ERRORS",
    "JupyterApp",
    "JupyterServer",
    "NotebookCellError",
    "NotebookPage",
    "WaitTimeoutError",
    "find_chromium",
    "json_writer_source",
    "jupyter_server",
    "open_notebook",
    "save_artifacts",
    "wait_for_json",
    "wait_until",
]

JupyterApp = Literal["lab", "notebook"]

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# The class that reads the options of each front end's server extension.
_APP_CONFIG_CLASS: dict[str, str] = {"lab": "LabApp", "notebook": "JupyterNotebookApp"}
_NOTEBOOK_URL: dict[str, str] = {"lab": "lab/tree", "notebook": "notebooks"}

_NEWS_SETTINGS = "@jupyterlab/apputils-extension/notification.jupyterlab-settings"

# JS snippets for functions of ``name``: this notebook's panel, if it is the current widget.
_FIND_PANEL_JS = (
    "const app = window.jupyterapp; const panel = app?.shell?.currentWidget;"
    " const ours = !!(panel && panel.context && panel.context.path === name"
    " && panel.sessionContext);"
)
_KERNEL_JS = "const kernel = ours ? panel.sessionContext.session?.kernel : null;"

# Needs _FIND_PANEL_JS; defines ``cells`` (code cells) and ``errors`` (their error outputs).
_CELL_ERRORS_JS = (
    "const cells = ours ? panel.content.widgets.filter((cell) => cell.model.type === 'code')"
    " : []; const errors = [];"
    " cells.forEach((cell, index) => { const outputs = cell.model.outputs;"
    " for (let i = 0; i < outputs.length; i++) { const output = outputs.get(i).toJSON();"
    " if (output.output_type === 'error') { errors.push({cell: index, ename: output.ename,"
    " evalue: output.evalue, traceback: output.traceback}); } } });"
)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Uncaught page errors the front ends raise on their own (see the module docstring).
KNOWN_PAGE_ERRORS: dict[str, tuple[str, ...]] = {
    "lab": (),
    "notebook": ("Cannot read properties of undefined (reading 'schema')",),
}


class WaitTimeoutError(TimeoutError):
    """A harness wait ran out of time; ``artifacts`` is the evidence folder, if one was saved."""

    artifacts: Path | None = None


class NotebookCellError(AssertionError):
    """A notebook cell raised; the message holds its traceback, ``artifacts`` the evidence."""

    artifacts: Path | None = None


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll ``condition`` until it returns a truthy value and return that value.

    Raises :class:`WaitTimeoutError` after ``timeout`` seconds; the last exception raised by
    ``condition`` (if any) is chained so the cause is visible.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
        except Exception as error:  # the condition may fail until the thing exists
            last_error = error
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {timeout:g} s waiting for {what}") from (
                last_error
            )
        time.sleep(interval)


def wait_for_json(
    path: Path | str,
    predicate: Callable[[Any], bool] = lambda _value: True,
    timeout: float = 20.0,
    *,
    interval: float = 0.1,
) -> Any:
    """Wait until ``path`` holds valid JSON for which ``predicate`` is true; return the value.

    A missing or half-written file counts as "not yet". On timeout the error shows the last value
    read, so a wrong value is distinguishable from no value at all.
    """
    path = Path(path)
    last: list[Any] = []

    def read() -> tuple[Any] | None:
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        last[:] = [value]
        return (value,) if predicate(value) else None

    try:
        return wait_until(read, timeout=timeout, interval=interval, what=f"JSON in {path}")[0]
    except WaitTimeoutError as error:
        seen = f"last value {last[0]!r}" if last else "no valid JSON was ever read"
        raise WaitTimeoutError(f"{error} ({seen})") from None


def json_writer_source(path: Path | str) -> str:
    """Notebook source defining ``write_json(**values)``, which merges values into ``path``.

    Writes are atomic (temporary file + ``os.replace``), so :func:`wait_for_json` never reads a
    half-written file; safe to call from a callback or a worker thread.
    """
    return (
        "import json as _json, os as _os, pathlib as _pathlib, threading as _threading\n"
        f"_JSON_OUT = _pathlib.Path({str(path)!r})\n"
        "_JSON_LOCK = _threading.Lock()\n"
        "def write_json(**values):\n"
        "    with _JSON_LOCK:\n"
        "        data = _json.loads(_JSON_OUT.read_text()) if _JSON_OUT.exists() else {}\n"
        "        data.update(values)\n"
        "        temporary = _JSON_OUT.with_name(_JSON_OUT.name + '.tmp')\n"
        "        temporary.write_text(_json.dumps(data))\n"
        "        _os.replace(temporary, _JSON_OUT)\n"
    )


def find_chromium() -> str | None:
    """Return the real Chromium binary (not Debian's wrapper script), or None.

    ``LR_WIDGET_CHROMIUM`` names another Chromium-based binary; if it is set but not an
    executable file, there is no browser (so the tests skip, or fail in CI).
    """
    override = os.environ.get("LR_WIDGET_CHROMIUM")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    real = Path("/usr/lib/chromium/chromium")
    if real.is_file() and os.access(real, os.X_OK):
        return str(real)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class JupyterServer:
    """A running Jupyter server started by :func:`jupyter_server`."""

    app: JupyterApp
    root_dir: Path
    runtime_dir: Path
    log_path: Path
    port: int
    token: str
    process: subprocess.Popen[bytes]
    kernel_env: dict[str, str] = field(default_factory=dict)
    _kernel_clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str = "", **query: str) -> str:
        """An absolute URL on this server with the token added to the query."""
        query = {**query, "token": self.token}
        return f"{self.base_url}{path.lstrip('/')}?{urllib.parse.urlencode(query)}"

    def notebook_url(self, name: str) -> str:
        """Where the front end opens notebook ``name`` (relative to the root dir).

        Lab gets ``reset``: it would otherwise restore the saved workspace and reopen the
        notebooks of earlier pages next to this one.
        """
        query = {"reset": ""} if self.app == "lab" else {}
        return self.url(f"{_NOTEBOOK_URL[self.app]}/{urllib.parse.quote(name)}", **query)

    def log_text(self) -> str:
        """Everything the server (and its kernels) wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the REST API (``path`` below ``/api/``); return the decoded JSON or None."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url(f"api/{path.lstrip('/')}"),
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def write_notebook(self, name: str, cells: Sequence[str]) -> Path:
        """Write code cells (one source string each) as notebook ``name`` in the root dir."""
        notebook = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
        notebook.cells = [
            nbformat.v4.new_code_cell(source)  # type: ignore[no-untyped-call]
            for source in cells
        ]
        # A kernelspec in the metadata keeps both front ends from asking which kernel to use.
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        notebook.metadata["language_info"] = {"name": "python"}
        path = self.root_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
        return path

    def sessions(self) -> list[dict[str, Any]]:
        """The server's sessions (``/api/sessions``): path, kernel id and state of each."""
        result: list[dict[str, Any]] = self.api("GET", "sessions")
        return result

    def start_session(self, notebook: str, kernel_name: str = "python3") -> str:
        """Start a kernel session for ``notebook`` without a browser; return the kernel id.

        For kernel-only checks with :meth:`kernel_eval` (the notebook file need not exist).
        """
        session = self.api(
            "POST",
            "sessions",
            {
                "path": notebook,
                "name": notebook,
                "type": "notebook",
                "kernel": {"name": kernel_name},
            },
        )
        return str(session["kernel"]["id"])

    def kernel_id(self, notebook: str) -> str:
        """The id of the kernel of the session whose path is ``notebook``."""
        for session in self.sessions():
            if session.get("path") == notebook and session.get("kernel"):
                return str(session["kernel"]["id"])
        raise LookupError(f"no running kernel for {notebook!r}; sessions: {self.sessions()!r}")

    def kernel_execute(self, notebook: str, code: str, timeout: float = 20.0) -> dict[str, Any]:
        """Run ``code`` silently in ``notebook``'s kernel; return the execute_reply content.

        Silent means no ``execute_input``, no execution count and no history, so the page's
        cells are not disturbed. The kernel handles it between cells (it queues behind a
        running cell). Raises RuntimeError with the traceback if the code raised.
        """
        return self._execute(notebook, code, {}, timeout)

    def kernel_eval(self, notebook: str, expression: str, timeout: float = 20.0) -> Any:
        """Evaluate ``expression`` in ``notebook``'s kernel and return it through JSON."""
        wrapped = f"__import__('json').dumps({expression})"
        reply = self._execute(notebook, "", {"value": wrapped}, timeout)
        result = reply["user_expressions"]["value"]
        if result.get("status") != "ok":
            raise RuntimeError(
                f"kernel_eval({expression!r}) raised {result.get('ename')}: "
                f"{result.get('evalue')}\n"
                + _ANSI_ESCAPE.sub("", "\n".join(result.get("traceback", [])))
            )
        # text/plain is the repr of the JSON string.
        return json.loads(ast.literal_eval(result["data"]["text/plain"]))

    def _execute(
        self, notebook: str, code: str, expressions: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        client = self._kernel_client(self.kernel_id(notebook))
        msg_id = client.execute(
            code, silent=True, store_history=False, user_expressions=expressions
        )
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"kernel did not answer within {timeout:g} s (is a cell still running?)"
                )
            try:
                message = client.get_shell_msg(timeout=remaining)
            except Exception:  # queue.Empty: loop to raise the clear error above
                continue
            if message["parent_header"].get("msg_id") == msg_id:
                break
        content: dict[str, Any] = message["content"]
        if content.get("status") == "error":
            raise RuntimeError(
                f"kernel code raised {content.get('ename')}: {content.get('evalue')}\n"
                + _ANSI_ESCAPE.sub("", "\n".join(content.get("traceback", [])))
            )
        return content

    def _kernel_client(self, kernel_id: str) -> Any:
        from jupyter_client.blocking.client import BlockingKernelClient

        if kernel_id not in self._kernel_clients:
            client = BlockingKernelClient(
                connection_file=str(self.runtime_dir / f"kernel-{kernel_id}.json")
            )
            client.load_connection_file()
            client.start_channels(iopub=False, stdin=False, hb=False, control=False)
            self._kernel_clients[kernel_id] = client
        return self._kernel_clients[kernel_id]

    def delete_sessions(self) -> None:
        """Shut down every session and kernel (between tests sharing this server)."""
        for client in self._kernel_clients.values():
            client.stop_channels()
        self._kernel_clients.clear()
        for session in self.sessions():
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.api("DELETE", f"sessions/{session['id']}")
        for kernel in self.api("GET", "kernels"):
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.api("DELETE", f"kernels/{kernel['id']}")

    def stop(self, timeout: float = 15.0) -> None:
        """Delete kernels, ask the server to shut down, then terminate and finally kill it."""
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.delete_sessions()
            with contextlib.suppress(Exception):
                self.api("POST", "shutdown", timeout=5.0)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5.0)


def _server_environment(base: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    environment = dict(os.environ)
    for variable in ("JUPYTER_TOKEN", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"):
        environment.pop(variable, None)
    environment.update(
        {
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            "JUPYTER_DATA_DIR": str(base / "data"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "IPYTHONDIR": str(base / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    environment.update(env or {})
    return environment


def _server_command(app: JupyterApp, port: int, token: str, base: Path) -> list[str]:
    config_class = _APP_CONFIG_CLASS[app]
    command = [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={base / 'root'}",
        "--ServerApp.terminals_enabled=False",
        f"--{config_class}.workspaces_dir={base / 'workspaces'}",
        f"--{config_class}.user_settings_dir={base / 'settings'}",
        f"--{config_class}.expose_app_in_browser=True",
    ]
    if app == "lab":
        # No network: do not ask PyPI whether a newer JupyterLab exists.
        command.append("--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")
    return command


def _prepare_dirs(base: Path) -> None:
    for name in ("config", "data", "runtime", "ipython", "root", "workspaces"):
        (base / name).mkdir(parents=True, exist_ok=True)
    news = base / "settings" / _NEWS_SETTINGS
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false"}))


def _wait_until_ready(server: JupyterServer, timeout: float) -> None:
    """Poll ``/api/status``; raise RuntimeError if the server exits, WaitTimeoutError if slow."""

    def ready_or_exited() -> bool:
        if server.process.poll() is not None:
            return True
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            return server.api("GET", "status", timeout=2.0) is not None
        return False

    try:
        wait_until(
            ready_or_exited, timeout=timeout, interval=0.2, what=f"jupyter {server.app} to start"
        )
    except WaitTimeoutError as error:
        raise WaitTimeoutError(
            f"{error}; its log ({server.log_path}):\n{server.log_text()}"
        ) from None
    if server.process.poll() is not None:
        raise RuntimeError(
            f"jupyter {server.app} exited with code {server.process.returncode} before it "
            f"was ready; its log ({server.log_path}):\n{server.log_text()}"
        )


@contextlib.contextmanager
def jupyter_server(
    app: JupyterApp,
    base_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[JupyterServer]:
    """Run ``jupyter lab`` (``app="lab"``) or ``jupyter notebook`` for the ``with`` block.

    ``base_dir`` (an empty temporary folder) receives the root dir (``base_dir / "root"``), the
    private Jupyter dirs and ``server.log``. ``env`` is added to the server's environment, which
    every kernel it starts inherits. If the free port is taken in the instant between choosing
    and binding it (``port_retries=0``), the start is retried on another port.
    """
    if app not in _APP_CONFIG_CLASS:
        raise ValueError(f"app must be 'lab' or 'notebook', got {app!r}")
    base_dir = Path(base_dir)
    _prepare_dirs(base_dir)
    environment = _server_environment(base_dir, env)
    server: JupyterServer | None = None
    for attempt in range(3):
        port, token = _free_port(), secrets.token_hex(24)
        log_path = base_dir / f"server-{attempt}.log" if attempt else base_dir / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                _server_command(app, port, token, base_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                cwd=base_dir / "root",
            )
        server = JupyterServer(
            app=app,
            root_dir=base_dir / "root",
            runtime_dir=base_dir / "runtime",
            log_path=log_path,
            port=port,
            token=token,
            process=process,
            kernel_env=dict(env or {}),
        )
        try:
            _wait_until_ready(server, startup_timeout)
            break
        except RuntimeError:
            # port_retries=0: another process may have taken the port since _free_port().
            if f"port {port} is already in use" not in server.log_text() or attempt == 2:
                raise
        except BaseException:
            server.stop()
            raise
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


def save_artifacts(
    folder: Path, label: str, page: Page | None, server: JupyterServer | None, console: list[str]
) -> Path:
    """Save a screenshot, the page HTML, the browser console and the server log; return folder."""
    folder = Path(folder) / label
    folder.mkdir(parents=True, exist_ok=True)
    if page is not None and not page.is_closed():
        with contextlib.suppress(Exception):
            page.screenshot(path=str(folder / "screenshot.png"), full_page=True, timeout=10_000)
        with contextlib.suppress(Exception):
            (folder / "page.html").write_text(page.content())
    (folder / "console.log").write_text("\n".join(console))
    if server is not None:
        (folder / "server.log").write_text(server.log_text())
    return folder


@dataclass
class NotebookPage:
    """One notebook opened in one Playwright page, with waits that leave evidence on failure."""

    page: Page
    server: JupyterServer
    name: str
    artifacts_dir: Path
    console: list[str] = field(default_factory=list)
    default_timeout: float = 30.0
    _failures: int = 0

    def fail(
        self,
        message: str,
        error_class: type[WaitTimeoutError | NotebookCellError] = WaitTimeoutError,
    ) -> WaitTimeoutError | NotebookCellError:
        """Save artifacts and return an error to raise that names where they are."""
        self._failures += 1
        folder = save_artifacts(
            self.artifacts_dir, f"failure-{self._failures}", self.page, self.server, self.console
        )
        tail = "\n".join(self.server.log_text().splitlines()[-15:])
        error = error_class(
            f"{message}\nartifacts (screenshot, page.html, console.log, server.log): {folder}"
            f"\nlast lines of the server log:\n{tail}"
        )
        error.artifacts = folder
        return error

    def wait(self, condition: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        """:func:`wait_until` that saves artifacts on timeout."""
        try:
            return wait_until(condition, timeout=timeout or self.default_timeout, what=what)
        except WaitTimeoutError as error:
            raise self.fail(str(error)) from error.__cause__

    def open(self) -> NotebookPage:
        """Load the notebook page and wait for its panel and a connected, idle kernel."""
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.goto(
                self.server.notebook_url(self.name), wait_until="domcontentloaded", timeout=60_000
            )
        except PlaywrightError as error:
            raise self.fail(f"could not load {self.name}: {error}") from None
        self.wait_for_function(
            f"(name) => {{ {_FIND_PANEL_JS} return ours; }}",
            what=f"{self.name} as the current widget (window.jupyterapp.shell.currentWidget)",
            timeout=60.0,
        )
        self.wait_for_kernel_idle(timeout=60.0)
        return self

    def wait_for_function(
        self, script: str, what: str, timeout: float | None = None, arg: Any = None
    ) -> Any:
        """Wait until the JS function ``script`` returns a truthy value; return that value.

        ``arg`` is passed to the function; it defaults to the notebook's name.
        """
        from playwright.sync_api import Error as PlaywrightError

        timeout = timeout or self.default_timeout
        try:
            handle = self.page.wait_for_function(
                script, arg=self.name if arg is None else arg, timeout=timeout * 1000, polling=100
            )
        except PlaywrightError as error:
            raise self.fail(f"timed out after {timeout:g} s waiting for {what}: {error}") from None
        return handle.json_value()

    def kernel_status(self) -> str:
        """The page's view of this notebook's kernel: 'idle', 'busy', ... or '' if none."""
        status: str = self.page.evaluate(
            f"(name) => {{ {_FIND_PANEL_JS} {_KERNEL_JS}"
            " return kernel && kernel.connectionStatus === 'connected' ? kernel.status : ''; }",
            self.name,
        )
        return status

    def wait_for_kernel_idle(self, timeout: float | None = None) -> None:
        """Wait until this notebook's kernel is connected and idle (its cells finished)."""
        self.wait_for_function(
            f"(name) => {{ {_FIND_PANEL_JS} {_KERNEL_JS}"
            " return !!kernel && kernel.connectionStatus === 'connected'"
            " && kernel.status === 'idle'; }",
            what=f"a connected, idle kernel for {self.name}",
            timeout=timeout,
        )

    def run_all_cells(self) -> None:
        """Start running every cell; returns at once (the command's promise is not awaited).

        Raises if this notebook is not the current widget, since the command acts on that.
        """
        # Returning the promise would block until every cell ended.
        current = self.page.evaluate(
            f"(name) => {{ {_FIND_PANEL_JS}"
            " if (ours) { app.commands.execute('notebook:run-all-cells'); }"
            " return panel && panel.context ? panel.context.path : String(panel); }",
            self.name,
        )
        if current != self.name:
            raise self.fail(f"cannot run {self.name}: the current widget is {current!r}")

    def wait_for_cells_done(self, timeout: float | None = None, allow_errors: bool = False) -> None:
        """Wait until every code cell has run and the kernel is idle.

        Raises :class:`NotebookCellError` with the traceback as soon as a cell shows an error
        output (unless ``allow_errors``): the run stops there, so waiting longer is pointless.
        Cells that start a background thread count as done when the cell returns.
        """
        result = self.wait_for_function(
            f"(name) => {{ {_FIND_PANEL_JS} {_KERNEL_JS} {_CELL_ERRORS_JS}"
            " if (!kernel || kernel.status !== 'idle') { return null; }"
            " if (errors.length) { return {errors}; }"
            " const done = cells.every((cell) => cell.model.executionCount !== null);"
            " return done ? {errors} : null; }",
            what=f"every cell of {self.name} to run",
            timeout=timeout,
        )
        if result["errors"] and not allow_errors:
            first = result["errors"][0]
            traceback = _ANSI_ESCAPE.sub("", "\n".join(first.get("traceback") or []))
            raise self.fail(
                f"cell {first['cell']} of {self.name} raised {first['ename']}: "
                f"{first['evalue']}\n{traceback}",
                NotebookCellError,
            )

    def wait_for_selector(self, selector: str, timeout: float | None = None) -> Any:
        """Wait until ``selector`` is visible; return its Playwright Locator (first match)."""
        from playwright.sync_api import Error as PlaywrightError

        timeout = timeout or self.default_timeout
        locator = self.page.locator(selector).first
        try:
            locator.wait_for(state="visible", timeout=timeout * 1000)
        except PlaywrightError as error:
            raise self.fail(
                f"timed out after {timeout:g} s waiting for {selector!r}: {error}"
            ) from (None)
        return locator

    def box(self, selector: str, timeout: float | None = None) -> dict[str, float]:
        """The on-screen bounding box of ``selector`` after scrolling it into view."""
        locator = self.wait_for_selector(selector, timeout)
        locator.scroll_into_view_if_needed()
        box = locator.bounding_box()
        if box is None or box["width"] <= 0 or box["height"] <= 0:
            raise self.fail(f"{selector!r} has no visible box ({box!r})")
        return dict(box)

    def click_at_fraction(
        self, selector: str, fraction_x: float, fraction_y: float = 0.5
    ) -> tuple[float, float]:
        """Mouse-click at a fraction of ``selector``'s box (0,0 = top left); return the point.

        This is a real click at page coordinates, so it lands on whatever is on top there (e.g. a
        transparent bqplot Image overlay above ``rect.plotarea_events``).
        """
        box = self.box(selector)
        x = box["x"] + fraction_x * box["width"]
        y = box["y"] + fraction_y * box["height"]
        self.page.mouse.click(x, y)
        return x, y

    def wait_for_json(
        self,
        path: Path | str,
        predicate: Callable[[Any], bool] = lambda _value: True,
        timeout: float | None = None,
    ) -> Any:
        """:func:`wait_for_json` that saves artifacts on timeout."""
        try:
            return wait_for_json(path, predicate, timeout or self.default_timeout)
        except WaitTimeoutError as error:
            raise self.fail(str(error)) from None

    def kernel_eval(self, expression: str, timeout: float = 20.0) -> Any:
        """Evaluate ``expression`` in this notebook's kernel; return its JSON value."""
        return self.server.kernel_eval(self.name, expression, timeout)

    def kernel_execute(self, code: str, timeout: float = 20.0) -> dict[str, Any]:
        """Run ``code`` silently in this notebook's kernel (see JupyterServer.kernel_execute)."""
        return self.server.kernel_execute(self.name, code, timeout)

    def page_errors(self, include_known: bool = False) -> list[str]:
        """Uncaught JavaScript errors so far, without the front end's own known ones."""
        errors = [line for line in self.console if line.startswith("[pageerror]")]
        if include_known:
            return errors
        known = KNOWN_PAGE_ERRORS[self.server.app]
        return [line for line in errors if not any(text in line for text in known)]

    def drawing_errors(self) -> list[str]:
        """Console errors and warnings about drawing: an SVG attribute the browser refused, or
        a message from bqplot or d3 (the widget's drawing), so far."""
        drawing = ("attribute ", "bqplot", "d3", "<svg>", "<path>", "<rect>", "<g>", "<text>")
        return [
            line
            for line in self.console
            if line.startswith(("[error]", "[warning]")) and any(word in line for word in drawing)
        ]

    def save_artifacts(self, label: str) -> Path:
        """Save a screenshot, page HTML, console and server log under ``label``; return it."""
        return save_artifacts(self.artifacts_dir, label, self.page, self.server, self.console)


def open_notebook(
    browser: Browser,
    server: JupyterServer,
    name: str,
    cells: Sequence[str],
    artifacts_dir: Path,
    *,
    viewport: tuple[int, int] = (1400, 1000),
) -> NotebookPage:
    """Write ``cells`` as notebook ``name``, open it in a fresh browser context and return it.

    The caller closes ``notebook.page.context`` when done (the fixtures do).
    """
    server.write_notebook(name, cells)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    notebook = NotebookPage(page=page, server=server, name=name, artifacts_dir=artifacts_dir)

    def record(message: ConsoleMessage) -> None:
        notebook.console.append(f"[{message.type}] {message.text}")

    page.on("console", record)
    page.on(
        "pageerror", lambda error: notebook.console.append(f"[pageerror] {error}\n{error.stack}")
    )
    try:
        return notebook.open()
    except BaseException:
        context.close()
        raise
