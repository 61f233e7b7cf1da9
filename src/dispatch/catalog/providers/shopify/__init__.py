"""Shopify storefronts: the public products.json and predictive-search answers."""
