"""Processes and signals: the master, its workers, and ``-s`` control. Knows no HTTP."""
