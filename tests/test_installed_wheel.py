"""What a pip user gets: the wheel built from this checkout's sdist, installed with its notebook
extra into a fresh virtual environment (torch at the pin), used from a folder outside the checkout.

Every other test imports the checkout (an editable install); this one checks the files a wheel
carries, the entry points, the shipped notebooks and ``lr_widget lab`` without a checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from tests.cli.test_lab_command import free_port, http_get, lab_process

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"
"""The pin of dev.sh and .ci/run: the CPU wheel these machines hold (an unpinned torch would
pull a CUDA build)."""
INSTALL_TIMEOUT_S = 1200
NOTEBOOK_TIMEOUT_S = 600


def _run(command: list[str], cwd: Path, timeout: float = INSTALL_TIMEOUT_S, **env: str) -> str:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
             **env},
    )  # fmt: skip
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(python, wheel)``: the wheel ``python -m build`` makes from the sdist it makes, and the
    interpreter of a fresh virtual environment it is installed in."""
    pytest.importorskip("build", reason="building the wheel needs the build package (test extra)")
    dist = tmp_path_factory.mktemp("dist")
    # Without --sdist or --wheel, build makes the sdist, then the wheel from that sdist.
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=ROOT)
    (wheel,) = dist.glob("lr_widget-*.whl")
    assert len(list(dist.glob("lr_widget-*.tar.gz"))) == 1
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", TORCH_PIN], cwd=venv)
    _run([str(python), "-m", "pip", "install", "-q", f"{wheel}[notebook]", TORCH_PIN], cwd=venv)
    return python, wheel


@pytest.mark.slow
@pytest.mark.kernel
def test_the_wheel_from_the_sdist_carries_the_package_and_its_notebooks(
    installed: tuple[Path, Path],
) -> None:
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "lr_widget/__init__.py" in names
    assert "lr_widget/py.typed" in names
    shipped = [name for name in names if name.endswith(".ipynb")]
    assert sorted(Path(name).name for name in shipped) == sorted(
        path.name for path in (ROOT / "notebooks").glob("*.ipynb")
    )
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)


@pytest.mark.slow
@pytest.mark.kernel
def test_an_installed_wheel_runs_the_demo_outside_the_checkout(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    python, _ = installed
    where = _run([str(python), "-c", "import lr_widget; print(lr_widget.__file__)"], tmp_path)
    assert not Path(where.strip()).is_relative_to(ROOT)  # the installed copy, not the checkout
    out = _run([str(python), "-m", "lr_widget", "demo", "--quiet", "--out", "."], tmp_path)
    assert "the default rule" in out
    assert (tmp_path / "range_test.json").is_file()


@pytest.mark.slow
@pytest.mark.kernel
def test_lab_from_an_install_serves_a_copy_of_the_quickstart_that_then_runs(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    python, _ = installed
    with lab_process(tmp_path, None, free_port(), python=str(python)) as lab:
        url = lab.wait_for_url()
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        assert parts.path.endswith("/lr_widget_quickstart.ipynb")
        token = urllib.parse.parse_qs(parts.query)["token"][0]
        status, _, _ = http_get(f"http://127.0.0.1:{parts.port}/api/status?token={token}")
        assert status == 200
    copy = tmp_path / "lr_widget_quickstart.ipynb"
    assert copy.read_bytes() == (ROOT / "notebooks" / "quickstart.ipynb").read_bytes()
    # Executed by a kernel of that environment: its own jupyter runs its own ipykernel (a private
    # data folder, so no kernelspec of the user's points the kernel at another Python).
    jupyter = python.parent / "jupyter"
    _run(
        [str(jupyter), "nbconvert", "--to", "notebook", "--execute", "--output", "executed.ipynb",
         f"--ExecutePreprocessor.timeout={NOTEBOOK_TIMEOUT_S}", str(copy)],
        tmp_path, timeout=NOTEBOOK_TIMEOUT_S, JUPYTER_DATA_DIR=str(tmp_path / "nbconvert-data"),
    )  # fmt: skip
    assert "training with lr" in (tmp_path / "executed.ipynb").read_text()
