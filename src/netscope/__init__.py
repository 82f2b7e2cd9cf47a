"""NetScope: a Kafka-fed network-call gateway.

Data path, as the package layout shows it:
ingest (Kafka) -> resilience + outbound (upstream HTTP calls) -> audit (Ceph RGW) -> api.
"""

__version__ = "0.1.0"
