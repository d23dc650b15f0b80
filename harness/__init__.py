"""Real processes for tests and benchmarks: free ports, redis-server, the HTTP server (imports neither)."""
