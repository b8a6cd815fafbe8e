"""Periodic jobs (scans, CT runs, renewal checks, CRL regeneration) run on one instance at a
time through a database lease, with catch-up after downtime and a history of runs.

Entry points: ``scheduler.runner.run_scheduler`` / ``Scheduler``,
``scheduler.registry.JobRegistry``, ``scheduler.history.list_runs`` / ``list_jobs``.
"""
