"""Unit tests: pure and fast; no servers, no database, no worker processes."""
