"""Command-line clients of the mapping authority (nvo3ctl, nvo3-register)."""
