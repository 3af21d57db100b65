"""wsgate: a WebSocket-aware HTTP/1.1 reverse proxy that reads nginx configuration."""

__version__ = "0.1.0"
__all__ = ["__version__"]
