"""Watch: users, rules (pure matching), events, notifications."""
