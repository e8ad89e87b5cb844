"""fastai warns while it imports (torch.jit.script is deprecated in torch 2.13; a pandas option
pandas 4 removes): its own noise, not ours. Import it once here with those warnings off, so the
tests' "every warning is an error" applies to what the sweep does."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import fastai.basics
    import fastai.callback.schedule  # noqa: F401
