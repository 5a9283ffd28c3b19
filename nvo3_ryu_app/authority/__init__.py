"""Decisions of the Information Mapping Authority: the mapping database, the
flows each NVE must hold, moves and registrations.  Plain Python."""
