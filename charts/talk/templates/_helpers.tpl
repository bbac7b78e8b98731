{{- define "talk.labels" -}}
app.kubernetes.io/part-of: talk
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
Name of a component's objects: namePrefix + component. The experiment catalog
(experiments/*.yaml) addresses the default names in namespace talk: pod nats-0,
http://talk-load.talk:8080, prometheus-a and prometheus-b.
Call with (list $ "component").
*/}}
{{- define "talk.name" -}}
{{- $root := index . 0 -}}
{{- printf "%s%s" $root.Values.namePrefix (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Short site name of a zone: zone-a -> a. */}}
{{- define "talk.site" -}}
{{- trimPrefix "zone-" . -}}
{{- end -}}

{{/* Spread pods of one component evenly over zones. Call with (list $ "component"). */}}
{{- define "talk.zoneSpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector:
      matchLabels:
        app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
        app.kubernetes.io/name: {{ index . 1 }}
{{- end -}}

{{- define "talk.natsUrls" -}}
{{- $nats := include "talk.name" (list . "nats") -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.nats.servers) -}}
{{- $urls = append $urls (printf "nats://%s-%d.%s-headless.%s.svc:4222" $nats $i $nats $.Release.Namespace) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
