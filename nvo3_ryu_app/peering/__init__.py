"""Peering: the BGP EVPN speaker's I/O (bgp.py) and the run-time fixes it
needs in os-ken (oskenfix.py).  The decisions are authority/evpn.py's."""
