"""The ``dispatch`` command line: thin commands over the services."""
