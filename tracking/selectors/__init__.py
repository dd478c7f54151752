"""Reads only: queues, search, export, figures, explanations."""
