"""dakr reconciler: policy-gated Kubernetes write operator."""

__version__ = "0.1.0"
