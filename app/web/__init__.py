"""The HTTP layer: app factory, routes, schemas, errors, access middleware, request context, metrics, logs, docs."""
