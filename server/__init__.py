"""`iacrun server`: the REST API over the same Orchestrator the CLI uses, for teams and CI.

`supervision` (the runs the server supervises, in threads, under leases in the registry).
"""
