"""The policy engine: embedded OPA, the OPA sidecar, the Rego test runner."""
