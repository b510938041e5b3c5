"""Push and pull over the OCI distribution API (``/v2/``), with Docker-compatible credentials.

``client`` speaks HTTP (basic and bearer auth, TLS with the localhost plain-HTTP fallback),
``auth`` reads and writes ``config.json``, ``push``/``pull`` move images between a
registry and the store, ``progress`` draws Docker's per-layer lines.
"""
