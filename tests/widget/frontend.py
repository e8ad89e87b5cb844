"""The browser's messages to widgets (GROUNDWORK §2), for feeding real widgets in plain pytest."""

from __future__ import annotations

from typing import Any

import numpy as np

from lr_widget.widget import LRWidget


def click_plot(widget: LRWidget, click_x: float, click_y: float = 0.5) -> None:
    """A click on the plot area, as the Image overlay reports it."""
    content = {"event": "element_click", "data": {"click_x": click_x, "click_y": click_y}}
    widget.plot.overlay._handle_custom_msg(content, [])


def click_point(widget: LRWidget, index: int) -> None:
    """A click on hover point ``index``, as the Scatter reports it (the datum and its index)."""
    plot = widget.plot
    x, y = drawn(plot.hover_points.x), drawn(plot.hover_points.y)
    datum = {"x": float(x[index]), "y": float(y[index])} if 0 <= index < x.size else {}
    data = {**datum, "index": index, "name": "", "unique_id": ""}
    plot.hover_points._handle_custom_msg({"event": "element_click", "data": data}, [])


def click(button: Any) -> None:
    """A button click from the browser."""
    data = {"method": "custom", "content": {"event": "click"}}
    button._handle_msg({"content": {"data": data}, "buffers": []})


def move(slider: Any, value: float) -> None:
    """A slider moved in the browser."""
    data = {"method": "update", "state": {"value": value}, "buffer_paths": []}
    slider._handle_msg({"content": {"data": data}, "buffers": []})


def drawn(values: Any) -> np.ndarray:
    """A mark's array as float64 (NaN where nothing is drawn)."""
    return np.asarray(values, dtype=np.float64)


def drag_range(widget: LRWidget, x0: float, x1: float) -> None:
    """A drag across the plot in range mode, as the brush reports it.

    The brush sets ``selected`` to ``scale.typedRange([x0, x1])``, a ``Float64Array`` for a
    LogScale; bqplot's ``array_or_json_serializer`` sends it as ``{dtype, shape, type}`` with the
    bytes as a binary buffer at ``["selected", "value"]``.
    """
    brush = widget.plot.ranges.brush
    state = {"selected": {"dtype": "float64", "shape": [2], "type": None}}
    data = {"method": "update", "state": state, "buffer_paths": [["selected", "value"]]}
    buffer = memoryview(np.array([x0, x1], dtype=np.float64).tobytes())
    brush._handle_msg({"content": {"data": data}, "buffers": [buffer]})


def toggle(button: Any, value: bool) -> None:
    """A ToggleButton pressed (or released) in the browser."""
    data = {"method": "update", "state": {"value": value}, "buffer_paths": []}
    button._handle_msg({"content": {"data": data}, "buffers": []})


def main_curve(fit: Any, smoothed: Any) -> Any:
    """The curve hover points and the selection read once a sweep has ended: the lag-free fit
    where it is defined, the smoothed curve past its end (the blow-up)."""
    import numpy as np

    fit = np.asarray(fit, dtype=np.float64)
    return np.where(np.isfinite(fit), fit, np.asarray(smoothed, dtype=np.float64))
