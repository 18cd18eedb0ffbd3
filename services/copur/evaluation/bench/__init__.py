"""Benchmarks: the purifiers (``purifier``), the service under load (``serve``), docs/PERFORMANCE.md
(``report``) and their commands (``cli``). Nothing heavy is imported here: ``copur --help`` stays fast."""
