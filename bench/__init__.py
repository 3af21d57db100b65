"""wsgate's benchmark against nginx: ``python -m bench`` (``make bench``).

Layout:

* :mod:`bench.loadgen` - the load generator, run as its own process: raw-socket WebSocket
  and HTTP clients on uvloop Protocols with pre-masked frames, which parse frame headers
  only; it snapshots the proxy's CPU from ``/proc`` around its measured window.
* :mod:`bench.procstat` - CPU time and RSS of process trees, read from ``/proc``.
* :mod:`bench.services` - the two node ``ws`` echo backends, nginx and wsgate, each started
  on free loopback ports and stopped by PID.
* :mod:`bench.runner` - scenarios x targets in alternating rounds, medians, the report.
* :mod:`bench.report` - the markdown tables.
* :mod:`bench.profile` - ``python -m bench --profile``: py-spy on a wsgate worker per
  workload, summarised as top functions.
* ``echo_server.js`` - the backend: node ``ws`` echo, plus a fixed 200 for plain GETs.
"""
