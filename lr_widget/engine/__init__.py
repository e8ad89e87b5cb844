"""The range test itself, with torch: the sweep (:mod:`.sweep`, :class:`~.sweep.LRFinder`), its
repeated runs (:mod:`.repeated_sweep`), one optimizer step (:mod:`.stepping`), the batches it
reads (:mod:`.batches`), the state it snapshots and restores (:mod:`.state`), the LR schedule
(:mod:`.schedules`), recording and the stop decision (:mod:`.recording`), distributed runs
(:mod:`.distributed`), the GradScaler watch (:mod:`.scaling`), its input gate (:mod:`.inputs`),
the one-job-per-model claim (:mod:`.claims`) and thread settings (:mod:`.threads`).
"""
