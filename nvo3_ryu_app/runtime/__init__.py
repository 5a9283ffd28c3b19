"""What peers can do to the process, bounded: accept loops that survive
running out of descriptors, with connection limits and timeouts, and
rate-limited logging of what peers cause.  Plain runtime helpers (the
eventlet hub, logging); no layer of ours."""
