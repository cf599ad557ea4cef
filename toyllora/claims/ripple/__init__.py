"""Flaw 3 — the ripple effect of the scaling factor across layers."""
