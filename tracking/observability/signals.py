"""Signals the tracking services send so that operations code can observe them without coupling.

`delivery_answered`: sent once per webhook POST after its answer is decided (and, for an
accepted body, after the transaction committed). Keyword arguments: `issuer_id` (as in the
path), `status`, `error_code` ("" when accepted), `new_count`, `duplicate_count`,
`rejected_count`.

`orders_folded`: sent by the projector after a set of orders is folded. Keyword argument:
`lags`, each folded order's seconds from its oldest waiting event to the fold.
"""

from django.dispatch import Signal

delivery_answered = Signal()
orders_folded = Signal()
