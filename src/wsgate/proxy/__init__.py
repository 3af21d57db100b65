"""The I/O layer: the only place where asyncio and uvloop are used by the proxy."""
