"""The task's own life: events, scheduling, lifecycle (every status change), enqueue, complexity."""
