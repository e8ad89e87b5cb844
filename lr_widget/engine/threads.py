"""Torch's intra-op thread count in the threads lr_widget starts.

``torch.set_num_threads(n)`` records ``n`` for the process but hands it to OpenMP only in the
calling thread (OpenMP keeps the count per thread). A thread started later begins with OpenMP's
own default, one thread per core, until torch's lazy per-thread set-up runs at its first parallel
op; whatever runs in parallel before that uses every core. Measured on two cores under
``torch.set_num_threads(1)``: a plain 100-step MLP loop in a new thread cost 45 ms of process CPU
time, 27 ms once the count was handed over. lr_widget's own sweeps measured the same either way
(an early op of theirs runs the set-up first); sweeps and confirmation probes call
:func:`adopt_torch_threads` anyway, so that the count the user chose holds from the first op of
the thread, whatever that op is and whatever the user's ``step_fn`` does.
"""

from __future__ import annotations

import torch


def adopt_torch_threads() -> int:
    """Give the calling thread the process's intra-op thread count; return that count.

    Cheap (well under a microsecond) and read at every call, so a later ``torch.set_num_threads``
    in the main thread reaches the next sweep.

    >>> adopt_torch_threads() == torch.get_num_threads()
    True
    """
    count = torch.get_num_threads()
    torch.set_num_threads(count)
    return count
