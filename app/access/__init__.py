"""API keys, tenant scopes and per-key rate limits, as plain Python (the HTTP side is `app.web.gate`)."""
