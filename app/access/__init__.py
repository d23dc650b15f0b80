"""API keys, tenant scopes and per-key rate limits (everything between a request and the routes)."""
