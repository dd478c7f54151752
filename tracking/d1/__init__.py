"""Talking with D1: our client for its on-demand API, and how D1 proves itself to us."""
