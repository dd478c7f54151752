"""HTTP interfaces: D1's notification webhook and the read API for integrations."""
