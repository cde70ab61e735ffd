"""Real git, gRPC on loopback, the real OPA engine, the test API server."""
