"""The engine is free of widget libraries: it imports with ipywidgets and bqplot unavailable."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_engine_imports_and_runs_without_ipywidgets_or_bqplot() -> None:
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"ipywidgets", "bqplot", "traitlets", "IPython"}:
                    raise ImportError(f"{name} is blocked for this test")
                return None

        sys.meta_path.insert(0, Block())
        import importlib
        import pkgutil

        import torch
        import lr_widget
        from lr_widget import find_lr, RangeTestResult, Comparison, estimate_curvature

        for module in pkgutil.walk_packages(lr_widget.__path__, "lr_widget."):
            if not module.name.startswith("lr_widget.widget"):
                importlib.import_module(module.name)

        model = torch.nn.Linear(3, 2)
        data = [(torch.randn(8, 3), torch.randint(0, 2, (8,))) for _ in range(3)]
        sweep = find_lr(model, data, num_steps=5)
        assert RangeTestResult.from_json(sweep.to_json()).lrs == sweep.lrs
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"ipywidgets", "bqplot"})
        assert not loaded, loaded
        try:
            lr_widget.LRWidget
        except ImportError as error:
            assert "blocked" in str(error)
        else:
            raise AssertionError("LRWidget imported although ipywidgets is blocked")
        print("engine ok")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "engine ok" in completed.stdout
