"""R4 Subscriptions with a rest-hook channel: what a partner asks to be told of
(:mod:`.model`), where Subscriptions are kept (:mod:`.store`), and the poller that runs
their searches and delivers the changes (:mod:`.poller`)."""

from adapter.subscriptions.model import for_reading, validate
from adapter.subscriptions.poller import SubscriptionPoller
from adapter.subscriptions.store import FileSubscriptionStore, RedisSubscriptionStore, Store

__all__ = [
    "FileSubscriptionStore",
    "RedisSubscriptionStore",
    "Store",
    "SubscriptionPoller",
    "for_reading",
    "validate",
]
