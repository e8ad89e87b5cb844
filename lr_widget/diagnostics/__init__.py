"""Measurements beside the sweep, training through the engine's own step path: confirmation
probes around a suggested LR (:mod:`.confirm`) and the curvature bound at the starting weights
(:mod:`.curvature`, with the Hessian eigenvalue in :mod:`.hessian` and each optimizer's update
rule in :mod:`.update_rules`).
"""
