"""What a range test produced, with numpy only: the result types and the protocol they share, the
settings they record, confirmation probes' verdicts, curvature estimates, noise bands, comparisons,
and the one gate through which every saved file is read (:mod:`.jsonfile`).

Nothing here imports torch: a saved result can be loaded, read and compared without it.
"""
