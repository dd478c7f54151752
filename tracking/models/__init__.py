"""The tables: issuers, card orders, their events and deliveries, staff-side records, rollups."""

from tracking.models.core import (  # noqa: F401
    ISSUER_ID_PATTERN,
    KEY_ID_PATTERN,
    AppendOnlyQuerySet,
    AuditEntry,
    CardOrder,
    D1Client,
    EventSource,
    Issuer,
    IssuerGrant,
    NotificationDelivery,
    OperationEvent,
    OrderAcknowledgement,
    OrderChange,
    OrderChangeResult,
    ReadApiToken,
    ReconcileAttempt,
    ReconcileOutcome,
    ReconcileTrigger,
    RefusalTally,
    StaffPreference,
    translated,
    validate_time_zone,
    zone_by_name,
    zone_name_validate,
)

# ---------------------------------------------------------------------------- insight
# Rollups for production files, sites and stages, and predicted ship dates.
from tracking.models.insight import (  # noqa: F401
    OrderPrediction,
    ProductionFile,
    RollupState,
    StageSpan,
    StageStat,
    StatKind,
)

# ---------------------------------------------------------------------------- issuer's side
# Registration conflicts kept for staff, and the jobs that ask D1 about many orders.
from tracking.models.issuer_side import (  # noqa: F401
    D1AskJob,
    D1AskJobStatus,
    RegistrationConflict,
)

# ---------------------------------------------------------------------------- outbound events
from tracking.outbound.models import (  # noqa: F401
    DeliveryAttempt,
    EventDelivery,
    EventEndpoint,
    OutboundEvent,
)
