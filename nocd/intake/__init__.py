"""Passive intake: SNMP traps/informs, Alertmanager webhooks and heartbeats feeding checks."""
