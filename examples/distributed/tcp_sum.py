"""Rank 0 listens on DSTACK_MASTER_NODE_IP:SUM_PORT; every rank (the master too) sends
`rank*rank + 1`; the master prints each part and the sum, then exits 0 once all have arrived."""

import os
import socket
import sys
import time

rank = int(os.environ["DSTACK_NODE_RANK"])
nodes = int(os.environ["DSTACK_NODES_NUM"])
master = os.environ["DSTACK_MASTER_NODE_IP"]
port = int(os.environ.get("SUM_PORT", "29600"))
ips = os.environ["DSTACK_NODES_IPS"].splitlines()
print(f"rank {rank} of {nodes}; master {master}; nodes {','.join(ips)}", flush=True)


def send(value: int) -> None:
    """Connect to the master (it may not listen yet), send the value, wait for its ack."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection((master, port), timeout=5) as conn:
                conn.sendall(f"{rank} {value}\n".encode())
                conn.recv(16)
                return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"rank {rank}: the master {master}:{port} never answered")
            time.sleep(0.2)


if rank == 0:
    server = socket.create_server((master, port))
    parts = {0: rank * rank + 1}
    while len(parts) < nodes:
        conn, _ = server.accept()
        with conn:
            sender, value = conn.makefile().readline().split()
            parts[int(sender)] = int(value)
            conn.sendall(b"ok\n")
            print(f"got {value} from rank {sender}", flush=True)
    print(f"sum of {nodes} ranks: {sum(parts.values())}", flush=True)
else:
    send(rank * rank + 1)
    print(f"rank {rank} sent {rank * rank + 1}", flush=True)
