"""The ``lr-widget`` command line (also ``python -m lr_widget``): range tests without Jupyter.

Commands
--------
demo
    Sweep the built-in demo task (:func:`lr_widget.demo.make_demo`).
run MODULE:FUNCTION
    Sweep a model of yours. ``MODULE`` is a dotted module importable from the current directory
    or a path to a ``.py`` file; ``FUNCTION`` takes no arguments and returns
    ``(model, loader[, loss_fn, optimizer])`` or a dict with the keys ``model`` and ``loader``
    and optionally ``loss_fn``, ``optimizer`` and ``val_loader`` (needed by ``--val``).
show RESULT.json
    Print the suggestions of a saved result, optionally re-smoothed with ``--beta``; draw it
    (``--svg``) or export it (``--csv``). Results are read as plain JSON, never unpickled.
lab
    Open the quickstart notebook in JupyterLab, served on 127.0.0.1 only, behind a random token.
version
    Print the versions of lr_widget, torch and Python.

``demo`` and ``run`` report progress on stderr (one line rewritten in place on a terminal, a
plain line every tenth of the sweep otherwise), print the suggestions as a table on stdout, and
save the result as JSON and the curve as SVG, in ``lr_widget_out/`` unless told otherwise.

Exit codes
----------
0
    Success. ``lab`` also exits 0 when stopped with Ctrl-C, its normal way to end.
1
    The sweep failed in user code (model, loss or data); the engine restored the model and the
    optimizer. For ``lab``: the server exited with an error after it had started. Also when
    stdout is closed early (``| head``).
2
    A usage or configuration error: bad arguments, a module or function that cannot be loaded,
    a setup function that raises or returns the wrong thing, an unreadable result file, a
    missing notebook, a file that cannot be written.
130
    Interrupted with Ctrl-C (the model and optimizer are restored).

Errors are reported in one line on stderr; ``--traceback`` adds the Python traceback.

Modules
-------
:mod:`.main`
    The argument parser and the commands; :func:`main` is the entry point.
:mod:`.setup_loader`
    Importing ``MODULE:FUNCTION`` and checking what it returns.
:mod:`.report`
    Progress on stderr, the suggestions table, writing the JSON, SVG and CSV files.
:mod:`.lab`
    Starting JupyterLab on 127.0.0.1 behind a token that never appears on a command line.
:mod:`.errors`
    The exit codes and :class:`CommandError`, shared by the others.
"""
