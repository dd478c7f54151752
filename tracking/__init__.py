"""Card-order tracking: D1 notifications in, one trustworthy state per card order out."""
