"""The notebooks in ``notebooks/``: each runs top to bottom in a real kernel and is committed clean.

Every ``notebooks/*.ipynb`` is picked up automatically. Each one runs in a fresh ipykernel on this
very interpreter (``sys.executable``, so the working tree's ``lr_widget`` is the one imported),
from a copy of the folder in a temporary directory, so nothing is written into the checkout. No
browser takes part: the notebooks must work headless (no clicks), which they do by waiting for the
sweep and falling back on the default suggestion.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient", reason="running notebooks needs nbclient (the test extra)")

from ipykernel.kernelspec import get_kernel_dict  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from traitlets import default  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "python3"
# Generous for a loaded 2-core CI machine; each cell of ours takes a few seconds at most.
CELL_TIMEOUT_S = 120
# Printed by a cell appended to the executed copy: which interpreter and lr_widget ran it.
PROBE_SOURCE = "import sys, lr_widget\nprint(sys.executable)\nprint(lr_widget.__file__)"
# Only these keys may sit in a committed notebook's metadata.
NOTEBOOK_METADATA_KEYS = {"kernelspec"}
# Cell metadata that front ends write while running or viewing a notebook.
VOLATILE_CELL_METADATA = {"execution", "ExecuteTime", "collapsed", "scrolled", "widgets"}


@pytest.fixture(scope="session")
def kernel_manager_class(tmp_path_factory: pytest.TempPathFactory) -> type[AsyncKernelManager]:
    """A kernel manager that knows one kernelspec, ``python3``: ipykernel on ``sys.executable``.

    Installed kernelspecs may point at another Python (``ipykernel install --user`` from another
    environment writes an absolute path), so the test brings its own and looks nowhere else.
    """
    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir()
    spec = get_kernel_dict()  # what ``ipykernel install`` writes, for this interpreter
    spec["argv"][0] = sys.executable
    spec["display_name"] = "Python 3 (lr_widget tests)"
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _only_the_test_kernelspec(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)

    return ThisPythonKernelManager


def _kernel_env(ipython_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # A fresh IPython profile: no startup files of the developer's, no history written to $HOME.
    env["IPYTHONDIR"] = str(ipython_dir)
    # The working tree first, even if a non-editable lr_widget is installed too.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # Spinning OpenMP threads starve the kernel's other threads on a loaded machine (dev.sh).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _outputs_text(cell: Any) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []))


def test_the_notebooks_are_found() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert {"quickstart.ipynb", "your_model.ipynb"} <= names


@pytest.mark.kernel
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_top_to_bottom_without_errors(
    path: Path, tmp_path: Path, kernel_manager_class: type[AsyncKernelManager]
) -> None:
    workdir = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, workdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    notebook = nbformat.read(workdir / path.name, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE_SOURCE, id="lr-widget-test-probe"))
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        kernel_manager_class=kernel_manager_class,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )

    # Raises CellExecutionError, with the cell and its traceback, at the first error.
    client.execute(env=_kernel_env(tmp_path / "ipython"))

    executable, module = _outputs_text(notebook.cells[-1]).splitlines()
    assert executable == sys.executable
    assert Path(module).resolve().is_relative_to(ROOT / "lr_widget")
    assert sorted(p.name for p in workdir.iterdir()) == sorted(
        p.name for p in NOTEBOOK_DIR.iterdir() if p.name != ".ipynb_checkpoints"
    ), "a notebook left files behind in its working directory"


def _unclean_parts(notebook: Any) -> list[str]:
    """What a committed notebook should not contain: outputs, counts, run-time metadata."""
    problems = []
    extra = sorted(set(notebook.metadata) - NOTEBOOK_METADATA_KEYS)
    if extra:
        problems.append(f"notebook metadata {extra} (only {sorted(NOTEBOOK_METADATA_KEYS)})")
    kernel = notebook.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        problems.append(f"kernelspec name {kernel!r} (expected {KERNEL_NAME!r})")
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and cell.get("outputs"):
            problems.append(f"cell {index}: outputs")
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            problems.append(f"cell {index}: execution_count {cell.execution_count}")
        volatile = sorted(VOLATILE_CELL_METADATA & set(cell.metadata))
        if volatile:
            problems.append(f"cell {index}: metadata {volatile}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_committed_notebook_is_valid_and_stripped(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    problems = _unclean_parts(notebook)
    assert not problems, (
        f"{path.relative_to(ROOT)} is not stripped: {'; '.join(problems)}. Clear the outputs "
        "and keep only the python3 kernelspec in the metadata, e.g. with nbstripout "
        "--extra-keys 'metadata.language_info'."
    )


def test_the_stripped_check_catches_what_running_a_notebook_leaves() -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("1 + 1", id="sum")],
        metadata={
            "kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3"},
            "language_info": {"name": "python"},
        },
    )
    assert _unclean_parts(notebook) == ["notebook metadata ['language_info'] (only ['kernelspec'])"]
    cell = notebook.cells[0]
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"})]
    cell.metadata["execution"] = {"iopub.status.idle": "2025-01-01T00:00:00Z"}
    assert _unclean_parts(notebook)[1:] == [
        "cell 0: outputs",
        "cell 0: execution_count 1",
        "cell 0: metadata ['execution']",
    ]


def test_the_quickstart_names_the_default_rule_the_code_uses() -> None:
    from lr_widget.suggestions.registry import DEFAULT_RULE

    notebook = nbformat.read(NOTEBOOK_DIR / "quickstart.ipynb", as_version=4)
    prose = " ".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert f"the default, `{DEFAULT_RULE}`," in " ".join(prose.split())
