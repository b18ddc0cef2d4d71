"""`/metrics` for Prometheus (the counters of app/metrics.py, added up over every process of
`serve --processes N` in multiprocess mode; and, read from the database at each scrape, the
meters online and offline, the age of the jobs' last runs and the messages due and the age of
the oldest), to the addresses in
`FEIKONG_METRICS_ALLOW` only (404 to anyone else: not served publicly unless configured).
`RequestTimer` times every request by its route."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time

import sqlalchemy as sa
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, REGISTRY,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from app import metrics
from app.db import transaction, utcnow
from app.estate.models import Meter
from app.jobs.runs import last_runs
from app.messages.jobs import queue_state


def allowed(client: str, allow: str) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    for item in filter(None, (x.strip() for x in allow.split(","))):
        try:
            if address in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


class DatabaseCollector:
    """What the database knows at the moment of the scrape."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        meters = GaugeMetricFamily("feikong_meters", "Meters by state (online, offline)",
                                   labels=["state"])
        ages = GaugeMetricFamily("feikong_job_last_run_age_seconds",
                                 "Seconds since each background job last ended a sweep",
                                 labels=["job"])
        due = GaugeMetricFamily("feikong_messages_due",
                                "Messages to residents due and not yet sent (reminders held "
                                "for the messaging hours are not due)")
        queue_age = GaugeMetricFamily("feikong_message_queue_age_seconds",
                                      "How long the oldest due message has waited (0: none)")
        now = utcnow()
        with transaction(self.engine, read_only=True) as s:
            counted = dict(s.execute(sa.select(Meter.online, sa.func.count())
                                     .group_by(Meter.online)).all())
            runs = last_runs(s)
            waiting, oldest_s = queue_state(s, now)
        meters.add_metric(["online"], counted.get(True, 0))
        meters.add_metric(["offline"], counted.get(False, 0))
        due.add_metric([], waiting)
        queue_age.add_metric([], oldest_s)
        for name, run in runs.items():
            ages.add_metric([name], (now - run.last_run_at).total_seconds())
        yield meters
        yield ages
        yield due
        yield queue_age


def _scrape(engine) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(DatabaseCollector(engine))
    return body + generate_latest(extra)


async def metrics_view(request: Request) -> Response:
    client = request.client.host if request.client else ""
    if not allowed(client, request.app.state.settings.metrics_allow):
        return Response("not found", status_code=404)
    body = await asyncio.to_thread(_scrape, request.app.state.engine)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestTimer:
    """Server time of every request, by route (the matched route's path, or "unmatched":
    never the raw path, whose 户号 would make a series per household)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def watched(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            prefix = scope.get("root_path", "") if path != "unmatched" else ""
            metrics.HTTP_SECONDS.labels(prefix + path, scope["method"], str(status[0])).observe(
                time.perf_counter() - started)
