"""Metrics of the papers (each module imports its heavy dependencies itself, so importing this is cheap)."""
