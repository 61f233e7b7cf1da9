"""API keys, principals, admin sessions, CSRF and rate limits."""
