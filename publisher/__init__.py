"""Siar's core: settings, post files, the database, sync, dispatch, retry, audit, daemon, CLI."""

__version__ = "0.1.0"
