"""Card-order events for the issuer's own systems: the outbox, signed webhooks and the pull feed."""
