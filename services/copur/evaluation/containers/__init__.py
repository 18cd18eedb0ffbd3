"""The cluster in real containers, measured from the host: ``copur compose demo`` (the demo's
steps and an attack scenario against a docker compose bring-up) and ``copur compose faults``
(container faults under a steady client load, each with what the client saw and how long
recovery took). May import what :mod:`copur.evaluation` may."""
