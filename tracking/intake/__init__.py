"""D1's notifications in: the webhook's contract, ingest, and which order an item belongs to."""
