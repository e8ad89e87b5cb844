"""``lr-widget run MODULE:FUNCTION``: import a user's setup function and check what it returns.

A setup function takes no arguments and returns ``(model, loader[, loss_fn, optimizer])`` or a
dict with the keys ``model`` and ``loader`` and optionally ``loss_fn``, ``optimizer`` and
``val_loader``. Whatever goes wrong is a :class:`~lr_widget.cli.errors.CommandError` naming the
problem; the engine checks the objects themselves.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import reprlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lr_widget.cli.errors import CommandError, describe_error

REQUIRED_SETUP_KEYS = ("model", "loader")
SETUP_KEYS = (*REQUIRED_SETUP_KEYS, "loss_fn", "optimizer", "val_loader")


@dataclass
class SweepSetup:
    """What one sweep needs, from the demo or from a user's setup function.

    Attributes
    ----------
    model, train_data, loss_fn, optimizer, val_data
        Passed to :class:`~lr_widget.engine.sweep.LRFinder`, which checks them.
    source
        Short name of where they came from (``"demo"``, ``"train:setup"``), for titles and errors.
    description
        One line about the task, printed above the suggestions.
    """

    model: Any
    train_data: Any
    loss_fn: Any = None
    optimizer: Any = None
    val_data: Any = None
    source: str = "setup"
    description: str = ""


def load_setup_function(spec: str) -> Callable[[], Any]:
    """Import ``module:function`` or ``path/to/file.py:function`` and return the function.

    Raises
    ------
    CommandError
        Naming the problem: a spec without a colon, a module or file that cannot be found or
        imported, a missing attribute, or one that is not callable.
    """
    module_name, colon, function_name = spec.rpartition(":")
    if not (colon and module_name and function_name.isidentifier()):
        raise CommandError(
            f"expected MODULE:FUNCTION, such as train:setup or path/to/train.py:setup, got {spec!r}"
        )
    module = _import_setup_module(module_name)
    if not hasattr(module, function_name):
        defined = ", ".join(_functions_of(module)) or "no functions"
        raise CommandError(
            f"{module_name} has no function {function_name!r} (it defines {defined})"
        )
    function = getattr(module, function_name)
    if not callable(function):
        raise CommandError(f"{spec} is not callable: it is {_shape_of(function)}")
    return function  # type: ignore[no-any-return]


def _functions_of(module: ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if callable(value) and getattr(value, "__module__", None) == module.__name__
    )


def _import_setup_module(name: str) -> ModuleType:
    if name.endswith(".py") or "/" in name or os.sep in name:
        return _import_file(Path(name))
    # `python -m` puts the current directory on sys.path, the `lr-widget` script does not.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if name == missing or name.startswith(missing + "."):
            raise CommandError(
                f"no module named {name!r} in the current directory ({os.getcwd()}) or on "
                "sys.path; give a dotted module name or path/to/file.py"
            ) from error
        raise CommandError(f"importing {name} failed: {describe_error(error)}") from error
    except SystemExit as error:
        raise CommandError(f"importing {name} called sys.exit({error.code!r})") from error
    except Exception as error:
        raise CommandError(f"importing {name} failed: {describe_error(error)}") from error


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    # Like running a script: its folder goes first on sys.path, so sibling imports work.
    sys.path.insert(0, str(path.resolve().parent))
    name = path.stem if path.stem not in sys.modules else f"_lr_widget_setup_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as error:
        del sys.modules[name]
        raise CommandError(f"importing {path} called sys.exit({error.code!r})") from error
    except Exception as error:
        del sys.modules[name]
        raise CommandError(f"importing {path} failed: {describe_error(error)}") from error
    return module


def setup_from(returned: Any, source: str) -> SweepSetup:
    """Read what a setup function returned: a 2 to 4 item tuple or a dict (see ``run``).

    Raises
    ------
    CommandError
        If ``returned`` has another shape, naming what it was.
    """
    if isinstance(returned, Mapping):
        parts = _setup_dict(returned, source)
    elif isinstance(returned, (tuple, list)) and 2 <= len(returned) <= 4:
        parts = dict(zip(SETUP_KEYS, returned, strict=False))
    else:
        raise CommandError(
            f"{source} must return (model, loader[, loss_fn, optimizer]) or a dict with keys "
            f"{', '.join(SETUP_KEYS)}; it returned {_shape_of(returned)}"
        )
    return SweepSetup(
        model=parts["model"],
        train_data=parts["loader"],
        loss_fn=parts.get("loss_fn"),
        optimizer=parts.get("optimizer"),
        val_data=parts.get("val_loader"),
        source=source,
        description=f"run: {source}",
    )


def _setup_dict(returned: Mapping[Any, Any], source: str) -> dict[str, Any]:
    missing = [key for key in REQUIRED_SETUP_KEYS if key not in returned]
    unknown = sorted(str(key) for key in returned if key not in SETUP_KEYS)
    if missing or unknown:
        problem = f"lacks {missing}" if missing else f"has unknown keys {unknown}"
        raise CommandError(
            f"the dict {source} returned {problem}; valid keys are {', '.join(SETUP_KEYS)} "
            f"({' and '.join(REQUIRED_SETUP_KEYS)} required)"
        )
    return {str(key): value for key, value in returned.items()}


def _shape_of(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {reprlib.repr(value)}"
