"""Fleet (seed 004): data-rescue work for volunteer nodes, on the queue's node leases."""
