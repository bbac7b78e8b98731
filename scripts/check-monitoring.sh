#!/usr/bin/env bash
# Checks what the charts ship for monitoring: every rules file under charts/*/rules/ with
# `promtool check rules`, its alerts against their unit tests (*.rules.test.yaml: input
# series, the alerts expected to fire and to stay quiet) with `promtool test rules`, the
# Grafana dashboards with scripts/check-dashboards.py (layout, datasource, PromQL, metric
# names), and the PrometheusRule that charts/firedrill renders: promtool checks its spec
# too, and it must be the rules file but for the agent DaemonSet selector.
#
# PROMTOOL and HELM override the binaries; by default Debian's prometheus package's and the
# one scripts/install-deps.sh builds.
set -euo pipefail

cd "$(dirname "$0")/.."
PROMTOOL=${PROMTOOL:-promtool}
HELM=${HELM:-/var/cache/firedrill/helm-v3.22.0/helm}
export PROMTOOL
for tool in "$PROMTOOL" "$HELM" python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "check-monitoring: no $tool; run scripts/install-deps.sh (make deps)" >&2
    exit 1
  fi
done

# shellcheck source=scripts/checks.sh
. scripts/checks.sh

for rules in charts/*/rules/*.rules.yaml; do
  run "$rules: promtool check rules" "$PROMTOOL" check rules "$rules"
done
for tests in charts/*/rules/*.rules.test.yaml; do
  run "$tests: promtool test rules" \
    sh -c 'cd "$(dirname "$2")" && "$1" test rules "$(basename "$2")"' - "$PROMTOOL" "$tests"
done
run "dashboards: scripts/check-dashboards.py" python3 scripts/check-dashboards.py

# The PrometheusRule as the chart renders it (release firedrill in firedrill-system): its
# spec, de-indented, is a rules file.
rendered() {
  "$HELM" template firedrill charts/firedrill --namespace firedrill-system \
    --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml |
    awk '/^spec:/ { on = 1; next } on { sub(/^  /, ""); print }' >"$out/rendered.rules.yaml"
  [ -s "$out/rendered.rules.yaml" ]
}
run "charts/firedrill: PrometheusRule renders" rendered
run "charts/firedrill: rendered PrometheusRule: promtool check rules" \
  "$PROMTOOL" check rules "$out/rendered.rules.yaml"
sed 's/daemonset="firedrill-agent"/namespace="firedrill-system", daemonset="firedrill-agent"/' \
  charts/firedrill/rules/firedrill.rules.yaml >"$out/expected.rules.yaml"
run "charts/firedrill: rendered PrometheusRule is rules/firedrill.rules.yaml" \
  diff -u "$out/expected.rules.yaml" "$out/rendered.rules.yaml"
exit $failed
