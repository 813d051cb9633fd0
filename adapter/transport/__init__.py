"""HTTP to the vendors: pooled clients, credentials, limits, retries, typed errors."""

from adapter.transport import scope
from adapter.transport.client import (
    BudgetRefused,
    CircuitRefused,
    Classifier,
    VendorClient,
    VendorHTTP,
    default_classify,
    make_vendor_http,
    tls_context,
)
from adapter.transport.credentials import LeyrCredentials, NyraKey, Secret
from adapter.transport.errors import (
    AuthenticationRejected,
    FatalVendorError,
    MalformedResponse,
    NotFound,
    PermissionMissing,
    RateLimited,
    TemporaryVendorError,
    VendorError,
    VendorRejected,
    VendorTimeout,
    VendorUnavailable,
    VendorValidation,
    classify_status,
    json_object,
    parse_retry_after,
)
from adapter.transport.ratelimit import KeyPool, Lease, Limit, NoKeysLeft
from adapter.transport.retry import RetryPolicy

__all__ = [
    "AuthenticationRejected",
    "BudgetRefused",
    "CircuitRefused",
    "Classifier",
    "FatalVendorError",
    "KeyPool",
    "Lease",
    "LeyrCredentials",
    "Limit",
    "MalformedResponse",
    "NoKeysLeft",
    "NotFound",
    "NyraKey",
    "PermissionMissing",
    "RateLimited",
    "RetryPolicy",
    "Secret",
    "TemporaryVendorError",
    "VendorClient",
    "VendorError",
    "VendorHTTP",
    "VendorRejected",
    "VendorTimeout",
    "VendorUnavailable",
    "VendorValidation",
    "classify_status",
    "default_classify",
    "json_object",
    "make_vendor_http",
    "parse_retry_after",
    "scope",
    "tls_context",
]
