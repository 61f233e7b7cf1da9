"""The catalogue: providers, normalised products and offers, price history, search and sync."""
