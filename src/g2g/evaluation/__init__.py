"""Evaluation of G2G models: metric primitives (metrics.py), probes and DCI (probes.py), test pairs
(pairs.py), 95 % intervals (intervals.py) and the `g2g eval` report built on them (report.py)."""
