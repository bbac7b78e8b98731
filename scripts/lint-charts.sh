#!/usr/bin/env bash
# Lints and renders every Helm chart under charts/: `helm lint --strict` and `helm template`
# with the default values and with each values file under the chart's ci/ (talk keeps one
# per weak configuration there). A directory without Chart.yaml (e.g. charts/firedrill
# while it holds only CRDs) is not a chart and is skipped.
#
# HELM overrides the binary; by default the one scripts/install-deps.sh builds.
set -euo pipefail

cd "$(dirname "$0")/.."
helm_version=v3.22.0
HELM=${HELM:-/var/cache/firedrill/helm-$helm_version/helm}
if [ ! -x "$HELM" ]; then
  echo "lint-charts: no helm at $HELM; run scripts/install-deps.sh (make deps)" >&2
  exit 1
fi

# shellcheck source=scripts/checks.sh
. scripts/checks.sh

for dir in charts/*/; do
  chart=${dir%/}
  if [ ! -f "$chart/Chart.yaml" ]; then
    echo "skip $chart (no Chart.yaml)"
    continue
  fi
  name=$(basename "$chart")
  run "$chart: lint" "$HELM" lint --strict "$chart"
  run "$chart: template (defaults)" "$HELM" template "$name" "$chart" --namespace "$name"
  for values in "$chart"/ci/*.yaml; do
    [ -e "$values" ] || continue
    run "$chart: lint with $(basename "$values")" "$HELM" lint --strict "$chart" -f "$values"
    run "$chart: template with $(basename "$values")" \
      "$HELM" template "$name" "$chart" --namespace "$name" -f "$values"
  done
done
exit $failed
