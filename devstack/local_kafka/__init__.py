"""A real local Kafka 3.9.1 broker for development and tests, run from Maven Central jars. No Docker needed.

Owns fetching the jars (jars.py), rendering the single-node KRaft config (config.py), the broker process
lifecycle (broker.py) and asking the network (probes.py). ``solicit kafka up|down|status`` and the
``kafka_bootstrap`` test fixture both go through :class:`LocalBroker`, so dev and CI run the same broker the
same way. Notes on the recipe and its pitfalls: docs/architecture.md, "Running Kafka from Maven jars".
"""

from devstack.local_kafka.broker import BrokerStatus, LocalBroker, StartReport
from devstack.local_kafka.config import BrokerConfig, SaslSslListener, new_cluster_id, render_server_properties
from devstack.local_kafka.errors import (
    BrokerNotReady,
    JarDownloadFailed,
    JavaNotFound,
    LocalKafkaError,
    MavenNotFound,
    PortInUse,
    StorageFormatFailed,
    ToolMissing,
)
from devstack.local_kafka.jars import KAFKA_VERSION, JarCache, JarFetch, default_kafka_home
from devstack.local_kafka.probes import find_free_ports, metadata_answers, port_is_free

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
    "SaslSslListener",
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
