"""Pipelines: specs, datums, jobs, scheduler, executors."""
