"""Evaluation of G2G models: metric primitives (metrics.py) and the report built on them."""
