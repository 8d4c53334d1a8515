"""Siar's platform adapters: one module per platform, plain `requests`, no database, no clock."""
