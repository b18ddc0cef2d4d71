"""Batch jobs (批量任务): large exports, the estate import, bulk cut approvals, reminders to a
building's low households, a building's change of tariff: queued by the console
(`app.batch.runner.enqueue`), run in the background (`run_batch_jobs`, app/stack.py), each with
its progress, failures and result in a `batch_job` row (app/batch/models.py)."""
