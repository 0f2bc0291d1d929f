"""Controllers: observed devices x desired models -> placement, reconciled level-triggered.

placement.py is pure (plan, diff); reconcile.py applies a plan's difference to the model
registry; devices.py follows udev hot-plug and calls the reconciler again.
"""
