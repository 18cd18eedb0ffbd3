"""Containers on this machine: the Docker engine (started here when none answers, and stopped
again by whoever started it), the offline base image and the project image, and a docker compose
project with the faults an operator can inflict on its containers (kill, pause, network
disconnect, restart, a lossy or slow link inside a container's network namespace).

Everything here drives the real ``docker`` and compose command-line tools as subprocesses; the
only Python-level state is which engine answers and which processes this package started.
May import what :mod:`copur.operations` may."""
