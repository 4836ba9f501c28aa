"""Paging: support hours, on-call schedules, escalation and notifiers (Twilio voice/SMS)."""
