"""The test stand-ins (a Kubernetes API server, forge APIs, OPA's Data API, a Git HTTP
server) and their own self-tests, apart from the product's tests."""
