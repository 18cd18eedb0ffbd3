"""Scenario files run against a live cluster: the schema (:mod:`.schema`), the runner (:mod:`.runner`) that drives
adversaries, party processes and the fusion center, and the report (:mod:`.report`)."""
