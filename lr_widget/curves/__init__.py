"""The numbers under every curve, with numpy only: smoothing, log-LR axes and grids, and the
checks of the numeric arguments every layer above shares.

The lowest layer: it imports nothing else of lr_widget.
"""
