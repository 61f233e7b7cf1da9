"""The operations surface: liveness, readiness, metrics and service information."""
