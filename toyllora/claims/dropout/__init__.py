"""Flaw 1 — dropout regularizes only in expectation: closed forms against Monte Carlo, and finite training."""
