"""One plugin per kind of resource, behind `ResourcePlugin` (base.py)."""
