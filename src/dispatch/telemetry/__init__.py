"""Structured logs, Prometheus metrics and telemetry events."""
