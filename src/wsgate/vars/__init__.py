"""Pure variable layer: ``$name`` templates compiled at load, evaluated per request."""
