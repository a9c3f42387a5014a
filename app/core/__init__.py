"""Foundations: config, database, logging, tracing, redaction, prompts; import nothing else."""
