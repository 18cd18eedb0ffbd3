"""The science: data sets, networks, training, the model bundle, purifiers, attacks, defenses,
certification.

Pure computation with no I/O beyond reading and writing bundle files: nothing here opens a
socket, starts a process or knows a wire format. May import: :mod:`copur.errors` and
:mod:`copur.science` only (never ``copur.transport``, ``copur.roles``, ``copur.operations``,
``copur.evaluation`` or ``copur_client``); ``tests/test_layout.py`` enforces it."""
