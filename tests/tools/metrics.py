"""Parses an OpenMetrics text exposition from stdin with the reference parser of the
prometheus_client package (it raises on anything invalid) and prints its samples as JSON:
[{"name": ..., "labels": {...}, "value": ...}, ...]."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
json.dump(samples, sys.stdout)
