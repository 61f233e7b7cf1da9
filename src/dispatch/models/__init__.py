"""Every ORM model, re-exported: one import point for the services and for Alembic."""

from dispatch.models.admin_session import AdminSession
from dispatch.models.api_key import ApiKey
from dispatch.models.catalog import (
    CatalogChange,
    CatalogOffer,
    CatalogPricePoint,
    CatalogProduct,
    CatalogProvider,
    CatalogProviderRequest,
    CatalogProviderToken,
)
from dispatch.models.fleet import RescueAsset, RescueCopy, RescueRanking
from dispatch.models.gateway import (
    GatewayAttempt,
    GatewayBreaker,
    GatewayClient,
    GatewayDevRule,
    GatewayEndpoint,
    GatewayEndpointClient,
    GatewayEndpointResource,
    GatewayHealthCheck,
    GatewayMappingRule,
    GatewayResource,
    GatewaySetting,
    GatewayTask,
)
from dispatch.models.job import Job, JobAttempt
from dispatch.models.node import Node
from dispatch.models.schedule import Schedule
from dispatch.models.user import DeletedSubject, User
from dispatch.models.watch import (
    OutboundClick,
    WatchAccountLink,
    WatchCursor,
    WatchEvent,
    WatchImportedItem,
    WatchImportJob,
    WatchMatch,
    WatchNotification,
    WatchOAuthState,
    WatchRule,
)
from dispatch.models.worker import WorkerRecord

__all__ = [
    "AdminSession",
    "ApiKey",
    "CatalogChange",
    "CatalogOffer",
    "CatalogPricePoint",
    "CatalogProduct",
    "CatalogProvider",
    "CatalogProviderRequest",
    "CatalogProviderToken",
    "DeletedSubject",
    "GatewayAttempt",
    "GatewayBreaker",
    "GatewayClient",
    "GatewayDevRule",
    "GatewayEndpoint",
    "GatewayEndpointClient",
    "GatewayEndpointResource",
    "GatewayHealthCheck",
    "GatewayMappingRule",
    "GatewayResource",
    "GatewaySetting",
    "GatewayTask",
    "Job",
    "JobAttempt",
    "Node",
    "OutboundClick",
    "RescueAsset",
    "RescueCopy",
    "RescueRanking",
    "Schedule",
    "User",
    "WatchAccountLink",
    "WatchCursor",
    "WatchEvent",
    "WatchImportJob",
    "WatchImportedItem",
    "WatchMatch",
    "WatchNotification",
    "WatchOAuthState",
    "WatchRule",
    "WorkerRecord",
]
