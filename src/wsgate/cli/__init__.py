"""Command-line front ends: the only place that installs log handlers and picks exit codes."""
