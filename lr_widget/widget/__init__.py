"""The Jupyter widget: a live, clickable LR range test (ipywidgets 8 + bqplot).

Importing this subpackage loads ipywidgets and bqplot; ``lr_widget.LRWidget`` imports it lazily,
so the engine never needs them.

Modules: :mod:`.widget` (``LRWidget``), :mod:`.plot` (the bqplot figure), :mod:`.controls`
(sliders, buttons, progress, status), :mod:`.runner` (the background sweep thread).
"""

from __future__ import annotations

from lr_widget.widget.widget import LRWidget

__all__ = ["LRWidget"]
