"""Authentication: API keys and rate limits (keys), short-lived signed tokens (tokens)."""
