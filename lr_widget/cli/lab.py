"""``lr-widget lab``: serve a notebook with JupyterLab on 127.0.0.1, behind a random token.

The token never appears on a command line (any local user can read a process's arguments): it
goes to the server in a config file in a private temporary folder, deleted as soon as the server
has read it, and the server's runtime info is checked to use it. Ctrl-C and SIGTERM stop the
server cleanly.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from lr_widget.cli.errors import EXIT_OK, EXIT_SWEEP_ERROR, CommandError

QUICKSTART = "quickstart.ipynb"
LAB_HOST = "127.0.0.1"
LAB_DEFAULT_PORT = 8888
LAB_PORT_RETRIES = 50
LAB_STARTUP_TIMEOUT_S = 120.0
LAB_SHUTDOWN_TIMEOUT_S = 20.0


def default_notebook() -> Path:
    """The quickstart notebook of the source checkout this package was imported from."""
    return Path(__file__).resolve().parents[2] / "notebooks" / QUICKSTART


SHIPPED_NOTEBOOKS = "share/lr_widget/notebooks"
"""Where a wheel installs the notebooks, under the environment's prefix (pyproject's data-files)."""
USER_COPY_PREFIX = "lr_widget_"
"""The copy of a shipped notebook in the user's folder: ``lr_widget_quickstart.ipynb``."""


def shipped_notebook(name: str) -> Path | None:
    """The notebook ``name`` as a pip install put it (``<prefix>/share/lr_widget/notebooks``),
    found through the package's list of installed files; ``None`` without one."""
    try:
        files = importlib.metadata.files("lr_widget") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == name and file.as_posix().endswith(f"{SHIPPED_NOTEBOOKS}/{name}"):
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    return None


def user_copy(shipped: Path, folder: Path) -> Path:
    """A copy of ``shipped`` in ``folder`` to open (never the installed file, which belongs to
    site-packages' environment); a copy already there is the user's and is opened as it is."""
    target = folder / f"{USER_COPY_PREFIX}{shipped.name}"
    if target.exists():
        print(f"opening your {target.name} (left as it is; delete it for a fresh copy)")
        return target
    try:
        shutil.copyfile(shipped, target)
    except OSError as error:
        raise CommandError(
            f"cannot copy the quickstart notebook into {folder}: {error.strerror or error}; run "
            "from a folder you can write to, or pass --notebook PATH"
        ) from error
    print(f"copied the quickstart notebook to {target}")
    return target


def run_lab(notebook: Path | None, port: int, open_browser: bool, allow_root: bool) -> int:
    """Serve ``notebook`` (default: :func:`default_notebook`) until Ctrl-C; the exit code.

    Parameters
    ----------
    notebook
        The notebook to open; ``None`` for the checkout's quickstart.
    port
        The first port to try; the next free one is used.
    open_browser
        Whether to open a browser, which happens only when there is a display.
    allow_root
        Let Jupyter run as root (containers).

    Raises
    ------
    CommandError
        If the notebook is missing, JupyterLab is not installed, the server does not start or
        does not use the token, or it exits with an error.
    """
    path = _find_notebook(notebook)
    if importlib.util.find_spec("jupyterlab") is None:
        raise CommandError("JupyterLab is not installed; pip install 'lr_widget[notebook]'")
    token = secrets.token_urlsafe(32)
    open_browser = open_browser and _has_display()
    with _token_config(token) as config, _sigterm_as_interrupt():
        command = lab_command(path, config, port, open_browser, allow_root)
        server = subprocess.Popen(command, env=kernel_environment(os.environ))
        try:
            return _serve(server, path, token, config)
        except KeyboardInterrupt:
            print("stopping JupyterLab", file=sys.stderr)
            return EXIT_OK
        finally:
            _stop_server(server)


def _find_notebook(given: Path | None) -> Path:
    """``given``; else the checkout's quickstart; else a copy, in the current folder, of the one
    a pip install shipped."""
    if given is None:
        checkout = default_notebook()
        if checkout.is_file():
            return checkout.resolve()
        shipped = shipped_notebook(QUICKSTART)
        if shipped is None:
            raise CommandError(
                f"no quickstart notebook: neither a source checkout ({checkout}) nor an "
                f"installed copy ({SHIPPED_NOTEBOOKS}/{QUICKSTART}); pass --notebook PATH"
            )
        return user_copy(shipped, Path.cwd()).resolve()
    notebook = given.expanduser().resolve()
    if notebook.is_file():
        return notebook
    raise CommandError(f"no such notebook: {notebook}; pass --notebook PATH to an .ipynb file")


def _has_display() -> bool:
    # Without a display Python's webbrowser falls back to console browsers (lynx, w3m), which
    # would take over the terminal the server logs to.
    if platform.system() in ("Darwin", "Windows"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def lab_command(
    notebook: Path, config_file: Path, port: int, open_browser: bool, allow_root: bool = False
) -> list[str]:
    """The ``python -m jupyterlab`` command serving ``notebook``'s folder on 127.0.0.1.

    The token is not on the command line (any local user can read a process's arguments): it
    is in ``config_file``, which is loaded after the user's own Jupyter config and so wins.
    """
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--config={config_file}",
        f"--ServerApp.ip={LAB_HOST}",
        f"--ServerApp.port={port}",
        f"--ServerApp.port_retries={LAB_PORT_RETRIES}",
        f"--ServerApp.root_dir={notebook.parent}",
        f"--ServerApp.open_browser={open_browser}",
        # Ctrl-C stops the server at once instead of asking "Shut down (y/[n])?".
        "--ServerApp.answer_yes=True",
        f"--LabApp.default_url=/lab/tree/{urllib.parse.quote(notebook.name)}",
    ]
    if allow_root:
        command.append("--ServerApp.allow_root=True")
    return command


@contextlib.contextmanager
def _token_config(token: str) -> Iterator[Path]:
    """A Jupyter config file setting the token, in a folder only this user can read."""
    folder = Path(tempfile.mkdtemp(prefix="lr_widget_lab_"))
    path = folder / "lr_widget_lab_config.json"
    try:
        path.write_text(json.dumps({"IdentityProvider": {"token": token}}), encoding="utf-8")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so ``kill`` also stops the server it started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def kernel_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """The server's environment, which its kernels inherit: ``environment`` with
    ``OMP_WAIT_POLICY=PASSIVE`` unless it sets a policy of its own.

    OpenMP reads the policy once, when torch loads it, so a kernel cannot change it later. With
    the default, torch's idle OpenMP threads spin waiting for work; beside one busy core (the
    browser, another kernel) the sweep's own threads lose the CPU to them, and a demo sweep ran
    several times slower than with the threads asleep.

    >>> kernel_environment({"PATH": "/bin"})["OMP_WAIT_POLICY"]
    'PASSIVE'
    >>> kernel_environment({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"]
    'ACTIVE'
    """
    return {**environment, "OMP_WAIT_POLICY": environment.get("OMP_WAIT_POLICY", "PASSIVE")}


def _serve(server: subprocess.Popen[bytes], notebook: Path, token: str, config: Path) -> int:
    info = _wait_for_server_info(server)
    shutil.rmtree(config.parent, ignore_errors=True)  # read by now: no token left on disk
    if info.get("token") != token:
        raise CommandError(
            "the Jupyter server does not use the token lr-widget gave it (a Jupyter config "
            "overrides it?); stopped it rather than serve without a known token"
        )
    url = (
        f"http://{LAB_HOST}:{info['port']}/lab/tree/{urllib.parse.quote(notebook.name)}"
        f"?token={token}"
    )
    print(f"JupyterLab is serving {notebook.parent}\n\n    {url}\n\nPress Ctrl-C to stop it.")
    sys.stdout.flush()
    code = server.wait()
    if code != 0:
        raise CommandError(f"JupyterLab exited with code {code}", EXIT_SWEEP_ERROR)
    return EXIT_OK


def _wait_for_server_info(server: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The server's runtime info (port, token), once the server accepts connections on it.

    jupyter_server writes the info file before its event loop binds the port (the bind is a
    callback of the loop), so a URL printed as soon as the file appears could be refused.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    info_file = Path(jupyter_runtime_dir()) / f"jpserver-{server.pid}.json"
    deadline = time.monotonic() + LAB_STARTUP_TIMEOUT_S
    info: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        code = server.poll()
        if code is not None:
            raise CommandError(f"JupyterLab did not start (exit code {code}); see its log above")
        if info is None:
            with contextlib.suppress(OSError, ValueError):  # not written yet, or half written
                found = json.loads(info_file.read_text(encoding="utf-8"))
                if isinstance(found, dict) and found.get("pid") == server.pid:
                    info = found
        if info is not None and accepts_connections(LAB_HOST, int(info["port"])):
            return info
        time.sleep(0.2)
    raise CommandError(f"JupyterLab did not start within {LAB_STARTUP_TIMEOUT_S:.0f} s")


def accepts_connections(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (a TCP connection opens and is closed).

    >>> import socket
    >>> with socket.create_server(("127.0.0.1", 0)) as listening:
    ...     accepts_connections("127.0.0.1", listening.getsockname()[1])
    True
    """
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop the server (SIGTERM: it shuts its kernels down), killing it if it hangs."""
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=LAB_SHUTDOWN_TIMEOUT_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        server.kill()
        server.wait()
