"""The Jupyter widget: a live, clickable LR range test (ipywidgets 8 + bqplot).

Importing this subpackage loads ipywidgets and bqplot; ``lr_widget.LRWidget`` imports it lazily,
so the engine never needs them.

Modules: :mod:`.widget` (``LRWidget``, a thin facade), :mod:`.session` (the sweeps, results and
kept results, without widgets), :mod:`.runner` (the background thread and the main-thread queue),
:mod:`.selection` (the selected LR and range, snapped to the recorded LRs), :mod:`.targets`
(where a selected LR goes: an optimizer, a notebook variable), :mod:`.display` (draws a session
on the views), and the views: :mod:`.plot` (the bqplot figure), :mod:`.overlays` (its band, kept
lines, curvature line, spread bars and range marks), :mod:`.clicks` (the click overlay and hover
points), :mod:`.curves` (the series one drawing needs), :mod:`.controls` (sliders, buttons,
progress, status); :mod:`.support` holds helpers without widget state.

DOM hooks, stable for browser tests and custom CSS: the widget's root element has the class
``lr-widget`` (:data:`~.widget.ROOT_CLASS`), its status line ``lr-widget-status``, the spread
lines ``lr-widget-spread``, the range label ``lr-widget-range``, the curvature line
``lr-widget-curvature`` (:mod:`.controls`), the hover tooltip ``lr-widget-tooltip``
(:data:`.clicks.TOOLTIP_CLASS`); the buttons are labelled ``Run``, ``Stop``, ``Keep``,
``Clear``, ``Select range`` and with the rule names (``valley``...). In the figure, the click
overlay is the only ``image``, the hover points are the mark right after it, a band is a
``path.area``, and in range mode the brush is the group ``g.brushintsel``.
"""

from __future__ import annotations

from lr_widget.widget.widget import LRWidget

__all__ = ["LRWidget"]
