"""Prometheus metrics, computed from the database at scrape time so that they are right however
many API and worker processes there are: jobs by status, a histogram of step durations (from
the counters kept as steps are written), and the queue depth (from the broker)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gisp_service.api.deps import ServiceContext
from gisp_service.core.queue import queue_depth
from gisp_service.db.repos import events as event_repo
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.session import read_session

log = logging.getLogger("gisp.api")


class ServiceCollector(Collector):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator:
        with read_session(self.ctx.rt.read_sessions) as session:
            counts = job_repo.counts_by_status(session)
            buckets, count, total = event_repo.step_duration_buckets(session)
        jobs = GaugeMetricFamily("gisp_jobs", "Jobs by status", labels=["status"])
        for status in job_repo.STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        steps = HistogramMetricFamily("gisp_step_duration_seconds", "Duration of pruning steps")
        steps.add_metric(
            [], [(str(b), c) for b, c in zip(event_repo.STEP_BUCKETS, buckets, strict=True)] + [("+Inf", count)], total
        )
        yield steps
        depth = GaugeMetricFamily("gisp_queue_depth", "Jobs waiting in the broker queue (-1: broker unreachable)")
        try:
            depth.add_metric([], queue_depth(self.ctx.celery, self.ctx.rt.settings.queue))
        except Exception:
            log.warning("broker unreachable while collecting queue depth")
            depth.add_metric([], -1)
        yield depth


def make_registry(ctx: ServiceContext) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(ctx))
    return registry
