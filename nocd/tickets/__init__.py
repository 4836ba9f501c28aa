"""Tickets: one per incident, with inventory facts and an SLA clock, delivered to sinks."""
