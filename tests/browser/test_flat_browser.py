"""A flat curve says so in the page (issue 28): a result with no descent beyond batch noise,
loaded into the widget, and a live sweep of the demo model trained to convergence, each show the
flat message under the plot and answer only with the LR the curve still gives (where the loss
starts to rise, divided), in JupyterLab and Notebook 7 alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lr_widget.widget.controls import ANSWER_CLASS
from lr_widget.widget.widget import ROOT_CLASS

from .harness import NotebookPage

ROOT = f".{ROOT_CLASS}"

FLAT_CELLS = [
    "import numpy as np\n"
    "from lr_widget import RangeTestResult\n"
    "from lr_widget.widget import LRWidget\n\n"
    "# A trained model's range test: flat up to 1e-2, then rising, with batch noise.\n"
    "lrs = np.logspace(-6, 1, 100)\n"
    "noise = np.random.default_rng(0).normal(0.0, 0.2, lrs.size)\n"
    "losses = 1.0 + 2.0 * np.maximum(np.log10(lrs / 1e-2), 0.0) + noise\n"
    "result = RangeTestResult(lrs=lrs.tolist(), losses=losses.tolist())",
    "w = LRWidget.from_result(result)\nw",
]

# The forum's case, live: the demo model trained to convergence, then swept in the widget.
CONVERGED_CELLS = [
    "import torch\n"
    "from lr_widget.demo import make_demo\n"
    "from lr_widget.widget import LRWidget\n\n"
    "torch.manual_seed(0)\n"
    "demo = make_demo(seed=0)\n"
    "optimizer = torch.optim.AdamW(demo.model.parameters(), lr=3e-3)\n"
    "for _ in range(20):\n"
    "    for inputs, targets in demo.train_loader:\n"
    "        optimizer.zero_grad()\n"
    "        demo.loss_fn(demo.model(inputs), targets).backward()\n"
    "        optimizer.step()",
    "w = LRWidget(demo.model, demo.train_loader, demo.loss_fn)\nw",
]


@pytest.mark.parametrize("cells", [FLAT_CELLS, CONVERGED_CELLS], ids=["saved", "converged-sweep"])
def test_a_flat_curve_shows_the_flat_message(
    open_notebook: Callable[..., NotebookPage], cells: list[str]
) -> None:
    notebook = open_notebook(cells)
    notebook.run_all_cells()
    notebook.wait_for_cells_done(timeout=120)
    answer = f"{ROOT} .{ANSWER_CLASS}"
    notebook.wait_for_function(
        "(answer) => (document.querySelector(answer)?.innerText || '').includes('flat')",
        what="the flat message under the plot",
        arg=answer,
    )
    notebook.wait(lambda: notebook.kernel_eval("not w.running"), "the sweep to end")
    text = notebook.page.locator(answer).inner_text()
    lr = notebook.kernel_eval("w.result.suggestion.lr")
    assert text.startswith(f"suggested {lr:.1e}"), text
    assert "no descent beyond batch noise" in text
    assert "the loss starts to rise at" in text
    assert notebook.kernel_eval("[r for r, s in w.suggestions.items() if s.ok]") == ["for_length"]
    assert notebook.drawing_errors() == []
    assert notebook.page_errors() == []
