"""``lr-widget lab``: a real JupyterLab on 127.0.0.1 behind a token, stopped cleanly."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import lr_widget
from lr_widget.cli import lab as lab_module
from lr_widget.cli.errors import EXIT_OK, EXIT_USAGE
from lr_widget.cli.lab import default_notebook, lab_command
from lr_widget.cli.main import main

nbformat = pytest.importorskip("nbformat")
needs_jupyterlab = pytest.mark.skipif(
    importlib.util.find_spec("jupyterlab") is None,
    reason="JupyterLab is not installed (pip install 'lr_widget[notebook]')",
)

STARTUP_TIMEOUT_S = 150.0
REQUEST_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0


# -- without a server -------------------------------------------------------------------------
def test_a_missing_notebook_is_a_usage_error_suggesting_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.ipynb"
    code = main(["lab", "--no-browser", "--notebook", str(missing)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"no such notebook: {missing}" in err
    assert "--notebook PATH" in err
    assert err.count("\n") == 1


def test_a_missing_quickstart_is_a_usage_error_suggesting_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lab_module, "default_notebook", lambda: tmp_path / "quickstart.ipynb")
    monkeypatch.setattr(lab_module, "shipped_notebook", lambda name: None)
    code = main(["lab", "--no-browser"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "no quickstart notebook: neither a source checkout" in err
    assert "pass --notebook PATH" in err


def test_an_installed_quickstart_is_opened_as_a_copy_that_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = tmp_path / "site" / "quickstart.ipynb"
    shipped.parent.mkdir()
    shipped.write_text("shipped")
    folder = tmp_path / "work"
    folder.mkdir()
    copy = lab_module.user_copy(shipped, folder)
    assert copy == folder / "lr_widget_quickstart.ipynb"
    assert copy.read_text() == "shipped"
    copy.write_text("my edits")
    assert lab_module.user_copy(shipped, folder) == copy
    assert copy.read_text() == "my edits"  # the user's file is theirs
    assert "left as it is" in capsys.readouterr().out
    assert shipped.read_text() == "shipped"


def test_the_default_notebook_is_the_checkouts_quickstart() -> None:
    checkout = Path(lr_widget.__file__).resolve().parents[1]
    assert default_notebook() == checkout / "notebooks" / "quickstart.ipynb"


def test_the_server_command_binds_loopback_and_keeps_the_token_off_it(tmp_path: Path) -> None:
    notebook = tmp_path / "my notebook.ipynb"
    command = lab_command(notebook, tmp_path / "config.json", 8888, open_browser=False)
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in command
    assert "--ServerApp.open_browser=False" in command
    assert f"--ServerApp.root_dir={tmp_path}" in command
    assert "--LabApp.default_url=/lab/tree/my%20notebook.ipynb" in command
    assert not any("token" in argument.lower() for argument in command)
    assert "--ServerApp.allow_root=True" not in command


# -- a real server ----------------------------------------------------------------------------
@dataclass
class LabProcess:
    """The ``lr-widget lab`` process, its stdout lines, and the Jupyter dirs it uses."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    runtime_dir: Path

    def wait_for_url(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                assert self.process.poll() is None, "lr-widget lab exited before printing a URL"
                continue
            if "http://" in line:
                return line.strip()
        raise AssertionError(f"no URL printed within {STARTUP_TIMEOUT_S:.0f} s")

    def server_info(self) -> dict[str, object]:
        files = list(self.runtime_dir.glob("jpserver-*.json"))
        assert len(files) == 1, files
        info: dict[str, object] = json.loads(files[0].read_text())
        return info


@contextlib.contextmanager
def lab_process(
    tmp_path: Path, notebook: Path | None, port: int, python: str = sys.executable
) -> Iterator[LabProcess]:
    """Start ``python -m lr_widget lab`` in private Jupyter dirs, from ``tmp_path``; never leave
    a process behind.

    With ``notebook=None`` the command opens its default: the checkout's quickstart notebook, or
    for an installed ``python``, a copy of the shipped one in ``tmp_path``.
    """
    dirs = {name: tmp_path / name for name in ("config", "data", "runtime", "ipython")}
    for folder in dirs.values():
        folder.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTER_")}
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        IPYTHONDIR=str(dirs["ipython"]),
    )
    command = [python, "-m", "lr_widget", "lab", "--no-browser", "--port", str(port)]
    if notebook is not None:
        command += ["--notebook", str(notebook)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    with (tmp_path / "lab.log").open("w") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=tmp_path
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(process, lines), daemon=True)
        reader.start()
        server_pids: list[int] = []
        try:
            lab = LabProcess(process, lines, dirs["runtime"])
            yield lab
        finally:
            server_pids += [int(path.stem.split("-")[1]) for path in _info_files(dirs["runtime"])]
            _kill_if_running(process, server_pids)
            reader.join(timeout=10)
            assert process.stdout is not None
            process.stdout.close()


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)


def _info_files(runtime_dir: Path) -> list[Path]:
    return [path for path in runtime_dir.glob("jpserver-*.json") if "-open" not in path.name]


def _kill_if_running(process: subprocess.Popen[str], server_pids: list[int]) -> None:
    """Clean-up after a failed test: kill the processes this test started, by pid."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
    for pid in server_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def http_get(url: str) -> tuple[int, bytes, dict[str, str]]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def make_notebook(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.write(notebook, path)
    return path


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
@needs_jupyterlab
def test_lab_serves_the_notebook_on_loopback_behind_a_token_and_stops_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    notebook = make_notebook(tmp_path / "notebooks" / "check.ipynb")
    port = free_port()
    with lab_process(tmp_path, notebook, port) as lab:
        url = urllib.parse.urlsplit(lab.wait_for_url())
        token = urllib.parse.parse_qs(url.query)["token"][0]
        base = f"{url.scheme}://{url.netloc}"
        assert url.hostname == "127.0.0.1"
        assert url.port == port
        assert url.path == "/lab/tree/check.ipynb"
        assert len(token) >= 32

        status, _, _ = http_get(url.geturl())
        assert status == 200
        status, body, _ = http_get(f"{base}/api/contents/check.ipynb?token={token}")
        assert status == 200
        assert json.loads(body)["type"] == "notebook"

        status, _, _ = http_get(f"{base}/api/contents/check.ipynb")
        assert status == 403
        status, _, headers = http_get(f"{base}/lab/tree/check.ipynb")
        assert status == 302
        assert headers["Location"].startswith("/login")
        status, _, _ = http_get(f"{base}/api/contents/check.ipynb?token=wrong{token}")
        assert status == 403

        info = lab.server_info()
        assert info["hostname"] == "127.0.0.1"
        assert info["root_dir"] == str(notebook.parent)
        server_pid = int(str(info["pid"]))
        _assert_token_not_in_command_lines(token, [lab.process.pid, server_pid])
        _assert_listens_on_loopback_only(port)

        lab.process.send_signal(stop_signal)
        assert lab.process.wait(timeout=STOP_TIMEOUT_S) == EXIT_OK
        assert not _info_files(lab.runtime_dir), "the server did not shut down cleanly"
        with pytest.raises(ProcessLookupError):
            os.kill(server_pid, 0)  # gone, and reaped by lr-widget


@pytest.mark.slow
@pytest.mark.timeout(400)
@needs_jupyterlab
def test_the_main_command_serves_the_quickstart_notebook(tmp_path: Path) -> None:
    """What the README's main command ends in: JupyterLab on the checkout's quickstart."""
    port = free_port()
    with lab_process(tmp_path, None, port) as lab:
        url = urllib.parse.urlsplit(lab.wait_for_url())
        token = urllib.parse.parse_qs(url.query)["token"][0]
        base = f"{url.scheme}://{url.netloc}"
        assert url.hostname == "127.0.0.1"
        assert url.path == "/lab/tree/quickstart.ipynb"
        status, _, _ = http_get(url.geturl())
        assert status == 200
        status, body, _ = http_get(f"{base}/api/contents/quickstart.ipynb?token={token}")
        assert status == 200
        cells = json.loads(body)["content"]["cells"]
        assert any("LRWidget" in "".join(cell["source"]) for cell in cells)
        _assert_listens_on_loopback_only(port)
        lab.process.send_signal(signal.SIGINT)
        assert lab.process.wait(timeout=STOP_TIMEOUT_S) == EXIT_OK


def _assert_token_not_in_command_lines(token: str, pids: list[int]) -> None:
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():  # Linux
            assert token not in cmdline.read_text(errors="replace"), pid


def _assert_listens_on_loopback_only(port: int) -> None:
    """Every listening socket on ``port`` is bound to 127.0.0.1 (read from the kernel's table,
    so no traffic leaves loopback to check it)."""
    if not Path("/proc/net/tcp").exists():
        return  # not Linux
    listening = []
    for table, loopback in (("/proc/net/tcp", "0100007F"), ("/proc/net/tcp6", None)):
        path = Path(table)
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                assert address == loopback, f"port {port} listens on {address} ({table})"
                listening.append(address)
    assert listening, f"nothing listens on port {port}"


def test_a_port_is_reported_open_only_while_something_listens_on_it() -> None:
    """The lab command prints its URL only once the server accepts connections: jupyter_server
    writes its info file before its event loop binds the port (CI once got "connection refused"
    on the very first request)."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        assert lab_module.accepts_connections("127.0.0.1", port)
    assert not lab_module.accepts_connections("127.0.0.1", port)  # closed: refused
