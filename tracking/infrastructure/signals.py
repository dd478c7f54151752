"""Signals the tracking services send so that operations code can observe them without coupling.

`delivery_answered`: sent once per webhook POST after its answer is decided (and, for an
accepted body, after the transaction committed). Keyword arguments: `issuer_id` (as in the
path), `status`, `error_code` ("" when accepted), `new_count`, `duplicate_count`,
`rejected_count`.
"""

from django.dispatch import Signal

delivery_answered = Signal()
