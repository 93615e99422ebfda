"""Adapters that turn real FL frameworks' traffic into gradinvert files (optional extras)."""
