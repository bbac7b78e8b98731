#!/usr/bin/env python3
"""Checks the Grafana dashboards the charts ship (charts/*/dashboards/*.json) and the metric
names their queries and the alert rules (charts/*/rules/*.rules.yaml) use.

- Each dashboard is valid JSON with a uid, a title and a `datasource` template variable;
  every panel has a unique id and a place on the 24-column grid that no other panel takes,
  and every query panel and query reads from `${datasource}`; every `$variable` a query uses
  is defined or one of Grafana's own.
- Every query is valid PromQL: with the variables filled in, they are checked as recording
  rules by `promtool check rules` (PROMTOOL, default promtool; skipped only with
  --no-promtool).
- Every metric a query or alert names is one that exists: talk_load_* ones are the gauges
  talk-load registers (read from talk/src/load/run.rs), a few are others' (kube-state-metrics,
  Prometheus' ALERTS); firedrill_operator_* ones are held to the operator's rendered registry
  by its unit test (metrics::tests::every_operator_metric_the_dashboard_and_alerts_name_is_exported).

Exit status 1 and one line per problem when anything is wrong.
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's own variables, as a query may use them, and a value each for promtool.
BUILTIN = {"__rate_interval": "1m", "__interval": "1m", "__range": "1d"}
# Metrics firedrill does not export but its dashboards and alerts may name.
EXTERNAL = {
    "kube_daemonset_status_number_unavailable",  # kube-state-metrics
    "ALERTS",  # Prometheus
}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "le", "inf", "nan",
}

problems = []


def problem(where, what):
    problems.append(f"{os.path.relpath(where, ROOT)}: {what}")


def talk_load_metrics():
    """The names talk-load's /metrics handler registers: Registry::with_prefix("talk_load")
    and the ("name", "help", value) gauges after it."""
    path = os.path.join(ROOT, "talk/src/load/run.rs")
    text = open(path, encoding="utf-8").read()
    start = text.find('Registry::with_prefix("talk_load")')
    if start < 0:
        problem(path, 'no Registry::with_prefix("talk_load"): where did talk-load\'s metrics go?')
        return set()
    end = text.find("registry.register(", start)
    names = re.findall(r'\(\s*"([a-z0-9_]+)",\s*"', text[start:end])
    if not names:
        problem(path, "found no gauge names after the talk_load registry")
    return {f"talk_load_{n}" for n in names}


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group(0)
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue  # a number's exponent or suffix
        names.add(word)
    return names


def check_names(where, exprs, talk):
    for expr in exprs:
        for name in sorted(metric_names(expr)):
            if name.startswith("firedrill_operator_"):
                continue  # the operator's unit test holds these to its registry
            if name.startswith("talk_load_"):
                if name not in talk:
                    problem(where, f"{name}: talk-load exports no such metric ({', '.join(sorted(talk))})")
            elif name not in EXTERNAL:
                problem(where, f"{name}: not a metric of firedrill, talk-load or a known exporter")


def overlap(a, b):
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def check_dashboard(path, talk):
    """Returns the dashboard's queries as (name, expr) for promtool."""
    try:
        dash = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        problem(path, f"not valid JSON: {e}")
        return []
    for key in ("uid", "title", "schemaVersion", "panels"):
        if key not in dash:
            problem(path, f"no {key}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem(path, "no `datasource` template variable of type datasource (prometheus)")
    values = dict(BUILTIN)
    for name, v in variables.items():
        current = v.get("current", {}).get("value")
        if name != "datasource":
            if not current:
                problem(path, f"template variable {name} has no current value")
            values[name] = current or "1m"
    queries = []
    ids = set()
    placed = []
    for panel in dash.get("panels", []):
        title = panel.get("title", "?")
        pid = panel.get("id")
        if not isinstance(pid, int) or pid in ids:
            problem(path, f"panel {title!r}: id {pid!r} missing or not unique")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid["x"] + grid["w"] > 24:
            problem(path, f"panel {title!r}: gridPos {grid} is not on the 24-column grid")
        else:
            for other_title, other in placed:
                if overlap(grid, other):
                    problem(path, f"panel {title!r} overlaps {other_title!r}")
            placed.append((title, grid))
        if panel.get("type") == "row":
            continue
        if panel.get("datasource") != DATASOURCE:
            problem(path, f"panel {title!r}: datasource is not {DATASOURCE}")
        targets = panel.get("targets", [])
        if not targets:
            problem(path, f"panel {title!r}: no queries")
        refs = set()
        for target in targets:
            ref = target.get("refId")
            if not ref or ref in refs:
                problem(path, f"panel {title!r}: refId {ref!r} missing or repeated")
            refs.add(ref)
            if target.get("datasource") != DATASOURCE:
                problem(path, f"panel {title!r} {ref}: datasource is not {DATASOURCE}")
            expr = target.get("expr", "")
            if not expr.strip():
                problem(path, f"panel {title!r} {ref}: empty expr")
                continue
            queries.append((f"panel {title!r} {ref}", expr))
    for annotation in dash.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            if annotation.get("datasource") != DATASOURCE:
                problem(path, f"annotation {annotation.get('name')!r}: datasource is not {DATASOURCE}")
            queries.append((f"annotation {annotation.get('name')!r}", annotation["expr"]))
    resolved = []
    for what, expr in queries:
        def fill(m):
            name = m.group(1) or m.group(2)
            if name not in values:
                problem(path, f"{what}: ${name} is not a template variable")
                return "1m"
            return values[name]
        resolved.append((what, re.sub(r"\$\{(\w+)\}|\$(\w+)", fill, expr)))
    check_names(path, [e for _, e in resolved], talk)
    return resolved


def rule_exprs(path):
    """The `expr:` values of a rules file (single-line, as firedrill writes them)."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*expr:\s*(.+)$", open(path, encoding="utf-8").read(), re.M)]


def promtool_check(queries, promtool):
    """Checks the queries' PromQL as recording rules with promtool."""
    lines = ["groups:", "  - name: dashboards", "    rules:"]
    for i, (_, expr) in enumerate(queries):
        lines.append(f"      - record: dashboard:query_{i}")
        lines.append(f"        expr: {json.dumps(expr)}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        run = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    except OSError as e:
        problems.append(f"promtool ({promtool}): {e}")
        return
    finally:
        os.unlink(f.name)
    if run.returncode != 0:
        bad = run.stdout + run.stderr
        for i, (what, expr) in enumerate(queries):
            if f"dashboard:query_{i}" in bad or f"rule {i + 1}" in bad:
                problems.append(f"{what}: invalid PromQL: {expr}")
        problems.append("promtool check rules on the dashboards' queries failed:\n" + bad)


def main():
    use_promtool = "--no-promtool" not in sys.argv[1:]
    talk = talk_load_metrics()
    dashboards = sorted(glob.glob(os.path.join(ROOT, "charts/*/dashboards/*.json")))
    if not dashboards:
        problems.append("no dashboards under charts/*/dashboards")
    queries = []

    def report(what, step):
        before = len(problems)
        step()
        if len(problems) == before:
            print(f"ok   {what}")

    for path in dashboards:
        found = []
        report(f"{os.path.relpath(path, ROOT)}: layout, datasource, metric names",
               lambda: found.extend(check_dashboard(path, talk)))
        queries += found
    for path in sorted(glob.glob(os.path.join(ROOT, "charts/*/rules/*.rules.yaml"))):
        exprs = rule_exprs(path)
        report(f"{os.path.relpath(path, ROOT)}: metric names of {len(exprs)} rules",
               lambda: check_names(path, exprs, talk))
    if use_promtool and queries:
        report(f"promtool: {len(queries)} dashboard queries parse",
               lambda: promtool_check(queries, os.environ.get("PROMTOOL", "promtool")))
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
