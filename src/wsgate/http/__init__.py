"""Pure HTTP/1.1 message layer: heads in, heads out, chunked framing; no sockets."""
