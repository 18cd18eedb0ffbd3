"""Evaluation: the robustness grid and the worst-of-suite evaluation with their reports, scripted
attack scenarios against a live cluster (schema, runner, report) and the benchmarks.

May import anything in :mod:`copur` except :mod:`copur.cli`, and :mod:`copur_client`.
``tests/test_layout.py`` enforces it."""
