"""The metrics the repository ships around the services stay true to them: every metric the
Prometheus rules (deploy/prometheus/rules.yml) and the Grafana dashboard
(deploy/grafana/panda-mesh.json) name is one a service exports, every recording rule the
dashboard reads is defined, the rules pass `promtool check rules` and their own unit tests
(`promtool test rules`), and the README's "Metrics" section documents every metric a service
exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TESTS = ROOT / "deploy" / "prometheus" / "rules_test.yml"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "panda-mesh.json"
README = ROOT / "README.md"

# What each kind of metric family exposes, as suffixes of its name.
_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
             "summary": ("", "_count", "_sum", "_created"), "info": ("_info",), "stateset": ("",),
             "gaugehistogram": ("_bucket", "_gcount", "_gsum"), "unknown": ("",)}


def _families() -> Iterator[Metric]:
    """Every metric family a service process exports: what its modules register on import, and
    the collectors its main registers (read by their description, with no database)."""
    # Each registers its modules' metrics on import.
    import iam_svc.main  # noqa: F401
    import jedi_svc.main  # noqa: F401
    import monitor_gateway.main  # noqa: F401
    import panda_runtime.client.metrics  # noqa: F401
    import server_svc.main  # noqa: F401
    from jedi_svc.logic.metrics import TaskCountCollector
    from panda_runtime.service.metrics import EnginePoolCollector
    from server_svc.logic.job_metrics import JobCountCollector

    yield from REGISTRY.collect()
    for collector in (JobCountCollector(None), TaskCountCollector(None), EnginePoolCollector(None)):  # type: ignore[arg-type]
        yield from collector.describe()


@cache
def exported() -> frozenset[str]:
    """The names of every series a service may export, and `up`, which Prometheus adds."""
    names = {"up"}
    for family in _families():
        names.update(f"{family.name}{suffix}" for suffix in _SUFFIXES[family.type])
    return frozenset(names)


def documented_names() -> set[str]:
    """The names a reader looks up: a counter with `_total`, a histogram by its own name."""
    names = set()
    for family in _families():
        if family.name.startswith(("panda_", "grpc_")):
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


# -- PromQL: the metric names an expression reads ---------------------------------------------

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names `expr` selects: identifiers that are not functions
    or aggregations (those are followed by a parenthesis), keywords, label names or label values."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers (and Grafana's ${...})
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\$\w+", " ", text)  # dashboard variables
    names = set()
    for match in re.finditer(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end():].lstrip()
        if following.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_the_expression_reader_finds_metrics_and_nothing_else() -> None:
    expr = ('sum by (job, le) (rate(grpc_server_handled_total{grpc_code=~"Unknown|Internal", job="x"}[5m]))'
            ' / on (job) group_left (queue) max(panda_jobs{queue=~"$queue"}) > bool 0.05 unless up == 0'
            ' or histogram_quantile(0.99, a:b:c[$__rate_interval]) offset 1h')
    assert metric_names(expr) == {"grpc_server_handled_total", "panda_jobs", "up", "a:b:c"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of the dashboard, and of its variables."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel["title"], target["expr"]) for target in panel.get("targets", []) if "expr" in target)
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict) and "query" in query:
            label_values = re.match(r"label_values\((\w+),", query["query"])
            found.append((f"variable {variable['name']}", label_values.group(1) if label_values else query["query"]))
    return found


def test_every_metric_the_rules_name_is_exported() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    unknown = {
        (rule.get("record") or rule.get("alert"), name)
        for rule in _rules() for name in metric_names(str(rule["expr"]))
        if name not in exported() and name not in recorded
    }
    assert not unknown, f"rules naming metrics no service exports: {sorted(unknown)}"
    assert len(recorded) >= 10 and any("alert" in rule for rule in _rules())


def test_every_metric_the_dashboard_names_is_exported_or_recorded() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    unknown = {(title, name) for title, expr in exprs for name in metric_names(expr)
               if name not in exported() and name not in recorded}
    assert not unknown, f"dashboard queries naming metrics no service exports and no rule records: {sorted(unknown)}"


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "panda-mesh" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] == "row" or panel["datasource"]["uid"] == "${datasource}", panel["title"]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test.sh installs it (Debian's prometheus package)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent)


def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = _promtool("check", "config", str(SCRAPE_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    tested = _promtool("test", "rules", str(RULES_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _readme_metrics_section() -> str:
    text = README.read_text()
    start = text.index("\n## Metrics\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def test_the_readme_documents_every_metric_a_service_exports() -> None:
    section = _readme_metrics_section()
    missing = sorted(name for name in documented_names() if f"`{name}" not in section)
    assert not missing, f"README.md's Metrics section does not document: {missing}"


def test_the_readme_documents_no_metric_that_is_not_exported() -> None:
    """The metrics its tables list (the first column) are all exported."""
    section = _readme_metrics_section()
    listed = set(re.findall(r"^\| `((?:panda|grpc)_[a-z0-9_]+)` \|", section, flags=re.MULTILINE))
    assert len(listed) >= 25
    stale = sorted(name for name in listed if name not in exported() and name not in documented_names())
    assert not stale, f"README.md's Metrics section lists metrics no service exports: {stale}"
