"""A real local Kafka 3.9.1 broker for development and tests, run from Maven Central jars. No Docker needed.

Owns fetching the jars (jars.py), rendering the single-node KRaft config (config.py), the broker process
lifecycle (broker.py) and asking the network (probes.py). ``solicit kafka up|down|status`` and the
``kafka_bootstrap`` test fixture both go through :class:`LocalBroker`, so dev and CI run the same broker the
same way. The recipe and its pitfalls are in docs/streaming-notes.md section 1.
"""

from connectors.kafka.broker import BrokerStatus, LocalBroker, StartReport
from connectors.kafka.config import BrokerConfig, new_cluster_id, render_server_properties
from connectors.kafka.errors import (
    BrokerNotReady,
    JarDownloadFailed,
    JavaNotFound,
    LocalKafkaError,
    MavenNotFound,
    PortInUse,
    StorageFormatFailed,
    ToolMissing,
)
from connectors.kafka.jars import KAFKA_VERSION, JarCache, JarFetch, default_kafka_home
from connectors.kafka.probes import find_free_ports, metadata_answers, port_is_free

__all__ = [
    "KAFKA_VERSION",
    "BrokerConfig",
    "BrokerNotReady",
    "BrokerStatus",
    "JarCache",
    "JarDownloadFailed",
    "JarFetch",
    "JavaNotFound",
    "LocalBroker",
    "LocalKafkaError",
    "MavenNotFound",
    "PortInUse",
    "StartReport",
    "StorageFormatFailed",
    "ToolMissing",
    "default_kafka_home",
    "find_free_ports",
    "metadata_answers",
    "new_cluster_id",
    "port_is_free",
    "render_server_properties",
]
