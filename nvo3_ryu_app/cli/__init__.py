"""Command-line clients of the mapping authority (nvo3ctl)."""
