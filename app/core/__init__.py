"""Foundations: config, database, logging, tracing, redaction, prompts, the task statuses; import
nothing else."""
