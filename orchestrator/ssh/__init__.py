"""Reaching hosts over SSH: the transport, pinned-key connections, ssh config entries, detection.

Importing this package is cheap; `asyncssh` is imported only by `connect` and `transport`.
"""
