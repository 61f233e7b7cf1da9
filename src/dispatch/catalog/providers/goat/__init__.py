"""GOAT: product templates from its Algolia search index."""
