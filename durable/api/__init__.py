"""The HTTP API (aiohttp), one module per resource.

``routing`` declares how a route is written (``@route`` next to its typed handler);
``workflows``, ``runs``, ``reruns``, ``backfills``, ``schedules``, ``tokens``, ``hooks``
and ``health`` hold the routes; ``routes`` lists them all, and both ``app``
(:func:`create_app`) and ``openapi`` (``proto/openapi.yaml``) are made from that list.
``schemas`` has the bodies' types, ``auth`` the tokens; ``/metrics`` is
:mod:`durable.telemetry`'s Prometheus reader.
"""

from durable.api.app import create_app

__all__ = ["create_app"]
