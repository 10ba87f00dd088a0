"""Edges to the outside world: one module (or sub-package) per outside system, each behind a small seam.

May import ``statemachine`` (inward); never ``streams``.
"""
