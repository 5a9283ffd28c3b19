"""The OpenFlow side: what each NVE holds against what it must hold, and
the messages that carry the difference."""
