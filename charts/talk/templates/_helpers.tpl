{{- define "talk.labels" -}}
app.kubernetes.io/part-of: talk
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* Spread pods of one component evenly over zones. */}}
{{- define "talk.zoneSpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector:
      matchLabels:
        app.kubernetes.io/name: {{ . }}
{{- end -}}

{{- define "talk.natsUrls" -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.nats.servers) -}}
{{- $urls = append $urls (printf "nats://%s-nats-%d.%s-nats-headless.%s.svc:4222" $.Release.Name $i $.Release.Name $.Release.Namespace) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
