"""R4 Subscriptions with a rest-hook channel: what a partner asks to be told of
(:mod:`.model`), where Subscriptions are kept (:mod:`.store`), and the poller that runs
their searches and delivers the changes (:mod:`.poller`); the topics of topic-based
Subscriptions and their notifications (:mod:`.topics`)."""

from adapter.subscriptions.model import MASK, chosen_topic, for_reading, is_topic_based, validate
from adapter.subscriptions.poller import SubscriptionPoller, events_bundle, status_bundle
from adapter.subscriptions.store import FileSubscriptionStore, RedisSubscriptionStore, Store
from adapter.subscriptions.topics import CONTENTS, TOPICS, Event, topic_url

__all__ = [
    "CONTENTS",
    "MASK",
    "TOPICS",
    "Event",
    "FileSubscriptionStore",
    "RedisSubscriptionStore",
    "Store",
    "SubscriptionPoller",
    "chosen_topic",
    "events_bundle",
    "for_reading",
    "is_topic_based",
    "status_bundle",
    "topic_url",
    "validate",
]
