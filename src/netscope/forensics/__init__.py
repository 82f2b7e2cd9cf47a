"""Reading the audit back: list a period's objects, rebuild timelines, report incidents.

Runbook section 7, "Reconstitution depuis audit Ceph". Everything here only reads the store
the service writes (docs/audit-format.md), local folder or RGW alike.
"""
