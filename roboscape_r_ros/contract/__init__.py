"""The action contract: what an action means on the wire, the arm controllers' rules, safety.

Below data/: a recorded or imported action means exactly what the live graph's adapters send."""
