"""eBay: the Browse API item search and its OAuth application token."""
