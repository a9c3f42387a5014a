"""Component tests: one part with its real neighbours (the database, the jail, loopback fakes)."""
