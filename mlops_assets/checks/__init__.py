"""Blocking quality gates: pandera schemas turned into asset checks (gates.py)."""
