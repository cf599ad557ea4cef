"""Flaw 2 — the zero-init start (B = 0): gradients, the Hessian, the escape from zero, balance, dropout."""
