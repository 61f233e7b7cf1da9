"""Dispatch: catalogue, watch, gateway and fleet on one durable task queue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dispatch")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
