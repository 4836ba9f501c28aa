"""Incidents: grouping failures into one incident per outage, with a timeline and outbox."""
