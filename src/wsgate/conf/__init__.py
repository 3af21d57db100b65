"""Pure configuration layer: nginx config text -> frozen, typed configuration (no sockets)."""
