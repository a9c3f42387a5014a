"""The Celery worker: the app built from the settings, and its thin tasks."""
