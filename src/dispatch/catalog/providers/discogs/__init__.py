"""Discogs: database search, marketplace stats and seller inventories."""
