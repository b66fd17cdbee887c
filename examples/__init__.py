"""Example apps served by ``make dev`` (importable from the repository root)."""
