"""Durable storage of the mapping database's records."""
