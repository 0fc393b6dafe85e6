"""The Grafana dashboard (manifests/grafana/zeroserve.json) loads, and every query in it names a metric
zeroserve exports: a renamed or dropped metric breaks this test, not an operator's dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import zeroserve.core.metrics  # noqa: F401 (its metrics register on import)

GRAFANA = Path(__file__).resolve().parent.parent / "manifests" / "grafana"
DASHBOARD = GRAFANA / "zeroserve.json"
# What a sample of each metric type is called in Prometheus' exposition, after the family's name.
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
# PromQL words that look like names but are none.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
            "le", "inf", "nan"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    """The metrics a PromQL expression reads: what is left once strings, label matchers, ranges, grouping
    clauses and Grafana's variables are taken out, and that is not a function (a name before ``(``)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):  # not the unit of 5m, the e of 1e3
        follows = text[match.end():].lstrip()
        if follows.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_and_group_and_deployment_filters():
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("group", "deployment"):
        assert variables[name]["type"] == "query" and variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["includeAll"] and variables[name]["multi"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"


def test_every_panel_has_a_title_a_place_and_prometheus_queries():
    for panel in panels(dashboard()):
        assert panel.get("title"), panel
        position = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(position) and position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


def test_every_metric_a_panel_queries_is_one_zeroserve_exports():
    known = exported()
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']!r}"
            unknown = names - known
            assert not unknown, f"{panel['title']}: {sorted(unknown)} are not metrics zeroserve exports"


def test_the_panels_show_what_an_operator_watches():
    queried = {name for panel in panels(dashboard()) for target in panel.get("targets", [])
               for name in metric_names(target["expr"])}
    for metric in ("zeroserve_inference_requests_total", "zeroserve_inference_request_seconds_bucket",
                   "zeroserve_replicas", "zeroserve_cold_starts_total", "zeroserve_cold_start_phase_seconds_bucket",
                   "zeroserve_events_handled_total", "zeroserve_events_retried_total",
                   "zeroserve_events_published_total", "zeroserve_events_dead_lettered_total",
                   "zeroserve_webhook_deliveries_total", "zeroserve_model_cache_bytes"):
        assert metric in queried, f"no panel shows {metric}"


def test_the_metric_names_of_an_expression_are_found_and_nothing_else():
    expr = ('histogram_quantile(0.95, sum by (le, deployment) (rate(zeroserve_inference_request_seconds_bucket'
            '{group=~"$group", code!~"4.."}[$__rate_interval]))) / on (deployment) group_left up offset 5m')
    assert metric_names(expr) == {"zeroserve_inference_request_seconds_bucket", "up"}


def test_the_dashboard_reaches_grafana_as_a_configmap_its_sidecar_loads():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: the manifests are built with `kubectl kustomize`; install kubectl")
    built = subprocess.run([kubectl, "kustomize", str(GRAFANA)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    (config_map,) = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    assert config_map["kind"] == "ConfigMap" and config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["zeroserve.json"]) == dashboard()
