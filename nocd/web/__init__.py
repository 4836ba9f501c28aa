"""The one HTTP listener: metrics, health, API, Twilio webhooks, dashboard."""
