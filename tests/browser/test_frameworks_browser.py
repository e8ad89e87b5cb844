"""The widget on a framework object in a real browser (issue 29): a LightningModule swept through
its own training_step, in JupyterLab and Notebook 7; clicking the default suggestion writes the
LR into the module's hparams, the status line says which framework the sweep went through, and
the page has no console errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget.controls import STATUS_CLASS
from lr_widget.widget.widget import ROOT_CLASS

from .harness import NotebookPage

ROOT = f".{ROOT_CLASS}"
STATUS = f"{ROOT} .{STATUS_CLASS}"

LIGHTNING_CELLS = [
    "import lightning.pytorch as pl\n"
    "import torch\n"
    "from torch.nn import functional as F\n"
    "from lr_widget import LRWidget\n"
    "from lr_widget.demo import make_demo\n\n"
    "demo = make_demo(seed=0)\n\n\n"
    "class LitClassifier(pl.LightningModule):\n"
    "    def __init__(self, net, lr=1e-3):\n"
    "        super().__init__()\n"
    "        self.save_hyperparameters(ignore=['net'])\n"
    "        self.net = net\n\n"
    "    def training_step(self, batch, batch_idx):\n"
    "        inputs, targets = batch\n"
    "        loss = F.cross_entropy(self.net(inputs), targets)\n"
    "        self.log('train_loss', loss)\n"
    "        return loss\n\n"
    "    def configure_optimizers(self):\n"
    "        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)\n\n\n"
    "module = LitClassifier(demo.model)",
    "w = LRWidget.from_lightning(module, train_dataloaders=demo.train_loader, epochs=2,\n"
    "                            update_attr=True)\n"
    "w",
]


def test_the_widget_on_a_lightning_module_writes_the_clicked_lr_into_it(
    open_notebook: Callable[..., NotebookPage], tmp_path: Path
) -> None:
    notebook = open_notebook(LIGHTNING_CELLS)
    notebook.run_all_cells()
    notebook.wait_for_cells_done(timeout=120)
    notebook.wait(lambda: notebook.kernel_eval("w.result is not None and not w.running"), "the end")
    button = f'{ROOT} button:text-is("{DEFAULT_RULE}"):not([disabled])'
    notebook.wait_for_selector(button).click()
    lr = notebook.wait(lambda: notebook.kernel_eval("w.lr"), "the click to reach the kernel")
    assert lr == notebook.kernel_eval("w.suggestions[w.result.suggestion.rule].lr")
    assert notebook.wait(
        lambda: notebook.kernel_eval("module.hparams.lr == w.lr"), "the LR in module.hparams"
    )
    status = notebook.page.locator(STATUS).inner_text()
    assert "optimizer: AdamW, through the LightningModule" in status, status
    folder = Path(os.environ.get("LR_WIDGET_BROWSER_SHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    notebook.page.locator(ROOT).screenshot(path=str(folder / "lightning-widget.png"))
    assert notebook.drawing_errors() == []
    assert notebook.page_errors() == []
