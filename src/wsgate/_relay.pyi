"""Type stub of the C extension ``wsgate._relay`` (src/wsgate/_relay.c)."""

from typing import Final

EOF_CLIENT: Final[int]
EOF_UPSTREAM: Final[int]
ERROR_CLIENT: Final[int]
ERROR_UPSTREAM: Final[int]
IDLE: Final[int]
SEND_CLIENT: Final[int]
SEND_UPSTREAM: Final[int]
ABORTED: Final[int]
CLOSED: Final[int]
GONE: Final[int]
READ_SIZE: Final[int]

class Relay:
    """One relay thread with its epoll loop (one per worker process)."""

    def __init__(self) -> None: ...
    def add(
        self,
        id: int,
        client_fd: int,
        upstream_fd: int,
        to_client: bytes,
        to_upstream: bytes,
        read_timeout: float,
        client_send_timeout: float,
        upstream_send_timeout: float,
        grace: float,
    ) -> None: ...
    def abort(self, id: int, /) -> None: ...
    def abort_all(self) -> None: ...
    def stop(self) -> None: ...
    def take(self) -> list[tuple[int, int, int, int, int, int, int, int]]: ...
    def fileno(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def peak_buffered(self) -> int: ...
    @property
    def tunnels(self) -> int: ...
    @property
    def added(self) -> int: ...
    @property
    def running(self) -> bool: ...
