"""The frameworks are optional: lr_widget imports and sweeps without them, never imports them
itself, and names the extra to install when one is needed; framework-only options are refused
on a plain model before anything trains."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from lr_widget import find_lr
from lr_widget.frameworks.link import MissingFrameworkError, framework_of, import_framework
from tests.helpers import assert_restored, capture, make_batches, make_classifier

FRAMEWORK_PACKAGES = {"lightning", "pytorch_lightning", "transformers", "fastai", "accelerate"}


def test_lr_widget_never_imports_a_framework_and_names_the_extra_when_one_is_missing() -> None:
    script = textwrap.dedent(
        f"""
        import sys

        BLOCKED = {sorted(FRAMEWORK_PACKAGES)!r}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked for this test")
                return None

        sys.meta_path.insert(0, Block())
        import importlib
        import pkgutil

        import torch
        import lr_widget
        from lr_widget import LRWidget, find_lr

        for module in pkgutil.walk_packages(lr_widget.__path__, "lr_widget."):
            importlib.import_module(module.name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded

        model = torch.nn.Linear(3, 2)
        data = [(torch.randn(8, 3), torch.randint(0, 2, (8,))) for _ in range(3)]
        assert find_lr(model, data, num_steps=5).metadata["framework"] is None
        try:
            LRWidget.from_learner(model)
        except TypeError as error:
            assert "pip install 'lr_widget[fastai]'" in str(error), error
        else:
            raise AssertionError("from_learner took a plain module")
        from lr_widget.frameworks.link import import_framework
        try:
            import_framework("LightningModule", "lightning.pytorch.utilities.parsing")
        except ImportError as error:
            assert "pip install 'lr_widget[lightning]'" in str(error), error
        print("optional ok")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "optional ok" in completed.stdout


def test_objects_are_recognised_by_their_classes_not_by_duck_typing() -> None:
    class Learner(torch.nn.Module):  # a user's own class of the same name is no fastai Learner
        pass

    assert framework_of(Learner()) is None
    assert framework_of(torch.nn.Linear(2, 1)) is None
    with pytest.raises(MissingFrameworkError, match=r"pip install 'lr_widget\[fastai\]'"):
        import_framework("fastai Learner", "fastai_that_does_not_exist")


def test_framework_options_on_a_plain_model_are_refused_before_anything_changes() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = capture(model, optimizer)
    with pytest.raises(TypeError, match="update_attr=True writes the LR back into a Lightning"):
        find_lr(model, make_batches(), optimizer=optimizer, update_attr=True, num_steps=5)
    with pytest.raises(TypeError, match="datamodule are for a LightningModule"):
        find_lr(model, make_batches(), datamodule=object(), num_steps=5)
    with pytest.raises(TypeError, match="update_attr must be True or False"):
        find_lr(model, make_batches(), update_attr="yes", num_steps=5)
    with pytest.raises(TypeError, match="train_data is missing"):
        find_lr(model, num_steps=5)
    assert_restored(before, model, optimizer)
