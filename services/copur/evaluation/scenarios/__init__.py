"""Scenario files run against a live cluster: the schema (:mod:`.schema`); the runner
(:mod:`.runner`), which runs the steps (:mod:`.steps`: adversary policies, predictions and their
metrics, :mod:`.metrics`; party faults, :mod:`.faults`) and assembles the typed report
(:mod:`.model`); the report's files (:mod:`.report`, from the Jinja2 templates in
``templates/``)."""
