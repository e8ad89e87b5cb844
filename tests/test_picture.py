"""SVG pictures of a range-test curve: valid XML, readable axes, robust to blow-ups and NaN."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from lr_widget.picture import Marker, curve_svg, save_curve_svg

SVG = "{http://www.w3.org/2000/svg}"


def _curve(num_steps: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A typical range-test curve from 1e-7 to 10: flat at 1.2, a dip to 0.5, then a blow-up."""
    lrs = np.logspace(-7, 1, num_steps)
    x = np.log10(lrs)
    smoothed = (
        1.2 - 0.7 * np.exp(-(((x + 1) / 1.5) ** 2)) + np.where(x > -0.5, 30 * (x + 0.5) ** 3, 0)
    )
    raw = smoothed + 0.1 * np.sin(np.arange(num_steps) * 1.7)
    return lrs, raw, smoothed


def _by_class(root: ET.Element, tag: str, name: str) -> list[ET.Element]:
    return [element for element in root.iter(f"{SVG}{tag}") if element.get("class") == name]


def _texts(root: ET.Element, name: str) -> list[str]:
    return [element.text or "" for element in _by_class(root, "text", name)]


def _path_points(root: ET.Element, name: str) -> list[tuple[float, float]]:
    (path,) = _by_class(root, "path", name)
    pairs = re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", path.get("d", ""))
    return [(float(x), float(y)) for x, y in pairs]


def _plot_box(root: ET.Element) -> tuple[float, float, float, float]:
    (frame,) = _by_class(root, "rect", "frame")
    left, top = float(frame.get("x", "")), float(frame.get("y", ""))
    return left, top, left + float(frame.get("width", "")), top + float(frame.get("height", ""))


def test_picture_is_standalone_svg_of_the_requested_size() -> None:
    root = ET.fromstring(curve_svg(*_curve(), width=800, height=500))
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "800",
        "500",
        "0 0 800 500",
    )
    assert _texts(root, "axis-title") == ["learning rate", "loss"]


def test_each_marker_has_one_dot_and_one_legend_entry() -> None:
    markers = [
        Marker("steep 1.0e-03", 1e-3, 1.0),
        Marker("valley 3.2e-02", 3.2e-2, 0.6),
        Marker("minimum 1.0e-01", 1e-1, 0.5, color="black"),
    ]
    root = ET.fromstring(curve_svg(*_curve(), markers=markers))
    dots = _by_class(root, "circle", "marker")
    assert len(dots) == 3
    assert dots[2].get("fill") == "black"
    assert len({dot.get("fill") for dot in dots}) == 3
    entries = _by_class(root, "g", "legend-entry")
    labels = [entry.findtext(f"{SVG}text") for entry in entries]
    assert labels == ["raw loss", "smoothed loss", *(marker.label for marker in markers)]


def test_x_axis_labels_every_decade_from_1e_07_to_1e_01() -> None:
    root = ET.fromstring(curve_svg(*_curve()))
    ticks = _by_class(root, "text", "x-tick")
    labels = [tick.text for tick in ticks]
    assert labels == [
        "1e-07",
        "1e-06",
        "1e-05",
        "1e-04",
        "1e-03",
        "1e-02",
        "1e-01",
        "1e+00",
        "1e+01",
    ]
    positions = [float(tick.get("x", "")) for tick in ticks]
    gaps = np.diff(positions)
    assert gaps == pytest.approx([gaps[0]] * 8, abs=0.02)


def test_narrow_picture_drops_decade_labels_rather_than_overlap_them() -> None:
    root = ET.fromstring(curve_svg(*_curve(), width=260))
    ticks = _by_class(root, "text", "x-tick")
    labels = [tick.text or "" for tick in ticks]
    assert 2 <= len(labels) < 9
    assert all(re.fullmatch(r"1e[+-]\d\d", label) for label in labels)
    positions = [float(tick.get("x", "")) for tick in ticks]
    # A 5-character label at 12 px is about 35 px wide.
    assert min(np.diff(positions)) > 40


def test_loss_axis_has_a_few_round_evenly_spaced_ticks() -> None:
    root = ET.fromstring(curve_svg(*_curve()))
    values = [float(text) for text in _texts(root, "y-tick")]
    assert 3 <= len(values) <= 8
    step = values[1] - values[0]
    assert np.diff(values) == pytest.approx([step] * (len(values) - 1))
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1.0, 2.0, 5.0)


def test_blow_up_does_not_stretch_the_loss_axis() -> None:
    lrs, raw, smoothed = _curve()
    smoothed[-5:] = [1e3, 1e4, 1e5, 1e6, 1e30]
    raw[-5:] = smoothed[-5:]
    root = ET.fromstring(curve_svg(lrs, raw, smoothed))
    values = [float(text) for text in _texts(root, "y-tick")]
    assert max(values) <= 2.5
    assert min(values) <= 0.5


def test_lines_are_clipped_to_the_plot_area() -> None:
    lrs, raw, smoothed = _curve()
    smoothed[-3:] = [50.0, 1e6, 1e300]
    root = ET.fromstring(curve_svg(lrs, raw, smoothed))
    left, top, right, bottom = _plot_box(root)
    for name in ("raw-loss", "smoothed-loss"):
        points = _path_points(root, name)
        assert points
        assert all(left <= x <= right and top <= y <= bottom for x, y in points)
    # The smoothed line leaves through the top edge instead of stopping short of it.
    assert min(y for _, y in _path_points(root, "smoothed-loss")) == pytest.approx(top)


def test_nan_and_inf_losses_leave_gaps() -> None:
    lrs, raw, smoothed = _curve()
    smoothed[40:45] = np.nan
    smoothed[-1] = np.inf
    raw[10] = -np.inf
    root = ET.fromstring(curve_svg(lrs, raw, smoothed))
    values = [value for element in root.iter() for value in element.attrib.values()]
    assert not [value for value in values if re.search(r"nan|inf", value, re.IGNORECASE)]
    (smoothed_path,) = _by_class(root, "path", "smoothed-loss")
    assert smoothed_path.get("d", "").count("M") == 2
    (raw_path,) = _by_class(root, "path", "raw-loss")
    assert raw_path.get("d", "").count("M") == 2


def test_all_nan_or_empty_curves_still_give_a_valid_picture() -> None:
    nan = [math.nan] * 5
    root = ET.fromstring(curve_svg([1e-3, 1e-2, 1e-1, 1.0, 10.0], nan, nan))
    assert _by_class(root, "path", "smoothed-loss")[0].get("d") == ""
    root = ET.fromstring(curve_svg([], [], []))
    assert len(_texts(root, "x-tick")) >= 2


def test_title_and_labels_are_escaped() -> None:
    svg = curve_svg(*_curve(), markers=[Marker("a<b>&c", 1e-2, 0.6)], title='<&> "quoted"')
    root = ET.fromstring(svg)
    assert root.findtext(f"{SVG}title") == '<&> "quoted"'
    assert _texts(root, "title") == ['<&> "quoted"']
    assert "a<b>&c" in [entry.findtext(f"{SVG}text") for entry in root.iter(f"{SVG}g")]
    assert "<&>" not in svg


def test_long_title_is_shortened_to_fit_but_kept_whole_in_the_svg_title() -> None:
    title = "range test " * 20
    root = ET.fromstring(curve_svg(*_curve(), title=title, width=400))
    (shown,) = _texts(root, "title")
    assert shown.endswith("…")
    assert len(shown) * 9 <= 400
    assert root.findtext(f"{SVG}title") == title


def test_same_input_gives_the_same_text() -> None:
    markers = [Marker("valley", 1e-2, 0.6)]
    assert curve_svg(*_curve(), markers=markers, title="t") == curve_svg(
        *_curve(), markers=markers, title="t"
    )


def test_save_writes_the_picture_and_returns_its_path(tmp_path: Path) -> None:
    target = tmp_path / "out" / "curve.svg"
    written = save_curve_svg(target, *_curve(), title="demo")
    assert written == target
    assert target.read_text(encoding="utf-8") == curve_svg(*_curve(), title="demo")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"lrs": [1e-3, 1e-2]}, "same length, got 2, 100 and 100"),
        ({"lrs": np.r_[0.0, np.logspace(-6, 1, 99)]}, r"positive and finite, got lrs\[0\]=0.0"),
        ({"width": 100}, "width must be an integer >= 240, got 100"),
        ({"height": 50.5}, "height must be an integer >= 160, got 50.5"),
    ],
)
def test_bad_arguments_name_the_parameter_and_value(
    arguments: dict[str, object], message: str
) -> None:
    lrs, raw, smoothed = _curve()
    call: dict[str, object] = {"lrs": lrs, "raw_losses": raw, "smoothed_losses": smoothed}
    with pytest.raises(ValueError, match=message):
        curve_svg(**(call | arguments))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lr", "loss", "message"),
    [
        (0.0, 1.0, "Marker lr must be positive and finite, got 0.0"),
        (math.inf, 1.0, "Marker lr must be positive and finite, got inf"),
        (1e-3, math.nan, "Marker loss must be finite, got nan"),
    ],
)
def test_marker_refuses_points_it_cannot_draw(lr: float, loss: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Marker("bad", lr, loss)
