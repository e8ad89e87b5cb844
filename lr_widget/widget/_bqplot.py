"""``bqplot``, imported once with its import-time deprecation warning silenced.

bqscales (imported by bqplot) builds a trait with constructor metadata, which traitlets
deprecates; the warning fires once at import and would break any ``-W error`` test suite that
imports :mod:`lr_widget.widget`. Every module of the widget imports bqplot from here.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"metadata \{'args'", category=DeprecationWarning, module="bqscales"
    )
    import bqplot
    import bqplot.interacts

__all__ = ["bqplot"]
