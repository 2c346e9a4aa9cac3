"""hutch-helper: the gRPC service that owns hutch's container processes."""

__version__ = "0.1.0"
