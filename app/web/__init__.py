"""The dashboard: server-rendered pages and the signed session."""
