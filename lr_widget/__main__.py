"""``python -m lr_widget``: the ``lr-widget`` command line of :mod:`lr_widget.cli`."""

from __future__ import annotations

from lr_widget.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m lr_widget"))
