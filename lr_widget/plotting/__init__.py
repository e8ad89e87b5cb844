"""How a curve looks: the colours and markers shared by the widget and the static pictures
(:mod:`.style`), and the matplotlib picture of a result (:mod:`.static`, matplotlib imported only
when a picture is drawn).

It reads a result through the protocol it offers, so it sits below :mod:`lr_widget.results`.
"""
