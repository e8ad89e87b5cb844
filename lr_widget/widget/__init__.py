"""The Jupyter widget: a live, clickable LR range test (ipywidgets 8 + bqplot).

Importing this subpackage loads ipywidgets and bqplot; ``lr_widget.LRWidget`` imports it lazily,
so the engine never needs them.

Modules: :mod:`.widget` (``LRWidget``, built from three mixins: :mod:`.sweeping` runs one or
several sweeps in a background thread and draws the result, :mod:`.selecting` picks the LR,
:mod:`.overlaying` keeps results for comparison, draws the curvature bound and selects LR
ranges), :mod:`.plot` (the bqplot figure) and :mod:`.overlays` (its band, kept lines, curvature
line, spread bars and range marks), :mod:`.scales` (log ticks, snapping, y ranges),
:mod:`.controls` (sliders, buttons, progress, status), :mod:`.runner` (the background thread),
:mod:`.support` (helpers without widget state).
"""

from __future__ import annotations

from lr_widget.widget.widget import LRWidget

__all__ = ["LRWidget"]
