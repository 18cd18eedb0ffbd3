"""Operations: bringing a cluster up on this machine (the launcher) or in containers
(:mod:`.containers`: the docker engine, the images, a compose project), the demo walk-through,
the development certificates and API keys commands, stub generation, and what every CLI command
shares.

May import: :mod:`copur.errors`, :mod:`copur.science`, :mod:`copur.transport`, :mod:`copur.roles`
and :mod:`copur_client`; never :mod:`copur.evaluation`. ``tests/test_layout.py`` enforces it."""
