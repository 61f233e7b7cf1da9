"""Provider adapters: one subpackage per vendor (parse.py pure, client.py with I/O)."""
