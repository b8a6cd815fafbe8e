"""Prometheus metrics of a running monitor (prometheus-client custom collector).

``register(registry, monitor)`` exposes, per log (label ``log``):

* ``certyard_ct_log_tree_size``: the latest signed tree size seen;
* ``certyard_ct_log_verified_size``: entries downloaded and verified against a tree head;
* ``certyard_ct_log_lag_entries``: tree size - verified size (how far behind the monitor is);
* ``certyard_ct_log_error``: 1 while the log's last attempt failed.

Values are read from the monitor when scraped, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ct_monitor.monitor import Monitor


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily(
            "certyard_ct_log_tree_size", "Latest tree size seen", labels=["log"]
        )
        verified = GaugeMetricFamily(
            "certyard_ct_log_verified_size", "Entries verified", labels=["log"]
        )
        lag = GaugeMetricFamily(
            "certyard_ct_log_lag_entries", "Tree size minus verified size", labels=["log"]
        )
        error = GaugeMetricFamily(
            "certyard_ct_log_error", "1 while the last attempt failed", labels=["log"]
        )
        for st in self.monitor.statuses():
            size.add_metric([st.log_url], st.tree_size)
            verified.add_metric([st.log_url], st.verified_size)
            lag.add_metric([st.log_url], st.lag)
            error.add_metric([st.log_url], 1 if st.last_error else 0)
        yield from (size, verified, lag, error)


def register(registry: CollectorRegistry, monitor: Monitor) -> MonitorCollector:
    collector = MonitorCollector(monitor)
    registry.register(collector)
    return collector
