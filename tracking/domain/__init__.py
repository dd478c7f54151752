"""The rules of a card order: D1's items, their order, the fold, the status classes."""
