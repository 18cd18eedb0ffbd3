"""Benchmarks: the purifiers (``purifier``), the service under load (``serve``, its load generator
``loadgen``), docs/PERFORMANCE.md (``report``, from ``templates/``, judging ``targets``) and their
commands (``cli``); the JSON files they share are ``models``, where they ran ``machine``, process
memory ``memory``. Nothing heavy is imported here: ``copur --help`` stays fast."""
