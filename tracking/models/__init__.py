"""The tables: issuers, card orders, their events and deliveries, staff-side records, rollups."""

# Each module imports the models it refers to, so these lines may come in any order.

# Who may call or read: D1's OAuth clients, read-API tokens, staff users' issuer grants.
from tracking.models.access import D1Client, IssuerGrant, ReadApiToken  # noqa: F401

# Staff actions and security-relevant changes, append-only.
from tracking.models.audit import AppendOnlyQuerySet, AuditEntry  # noqa: F401

# What D1 sent: each message, and the calls refused at the gate.
from tracking.models.deliveries import EventSource, NotificationDelivery, RefusalTally  # noqa: F401

# The events behind an order, and pull & change results.
from tracking.models.events import OperationEvent, OrderChange, OrderChangeResult  # noqa: F401

# Rollups for production files, sites and stages, and predicted ship dates.
from tracking.models.insight import (  # noqa: F401
    OrderPrediction,
    ProductionFile,
    RollupState,
    StageSpan,
    StageStat,
    StatKind,
)

# Copies of stored items waiting to be counted by the projector.
from tracking.models.intake import EventCopy  # noqa: F401

# Registration conflicts kept for staff, and the jobs that ask D1 about many orders.
from tracking.models.issuer_side import (  # noqa: F401
    D1AskJob,
    D1AskJobStatus,
    RegistrationConflict,
)

# The issuers, their ids and zones (migrations name `tracking.models.zone_name_validate`).
from tracking.models.issuers import (  # noqa: F401
    ISSUER_ID_PATTERN,
    KEY_ID_PATTERN,
    Issuer,
    zone_by_name,
    zone_name_validate,
)

# Card orders and their derived state.
from tracking.models.orders import CardOrder, translated  # noqa: F401

# Outbound events: endpoints, events, deliveries and their attempts.
from tracking.models.outbound import (  # noqa: F401
    DeliveryAttempt,
    EventDelivery,
    EventEndpoint,
    OutboundEvent,
)

# Each on-demand call to D1 about one order.
from tracking.models.reconcile import (  # noqa: F401
    ReconcileAttempt,
    ReconcileOutcome,
    ReconcileTrigger,
)

# Acknowledgements and staff preferences (migrations name `tracking.models.validate_time_zone`).
from tracking.models.staff import (  # noqa: F401
    OrderAcknowledgement,
    StaffPreference,
    validate_time_zone,
)
