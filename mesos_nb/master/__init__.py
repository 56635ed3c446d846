"""The master: pools agents' resources and offers them to frameworks (see README.md)."""
