"""Database and cache helpers with no knowledge of card orders."""
