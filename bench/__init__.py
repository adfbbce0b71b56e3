"""`make bench`: the service measured from outside against baselines started in the same run.

Run it with `make bench` (or `uv run python -m bench`); see docs/PERFORMANCE.md.
"""
