{{/* The release's base name: the release name if it contains "firedrill". */}}
{{- define "firedrill.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "firedrill.operator.name" -}}
{{- printf "%s-operator" (include "firedrill.fullname" .) -}}
{{- end -}}

{{- define "firedrill.agent.name" -}}
{{- printf "%s-agent" (include "firedrill.fullname" .) -}}
{{- end -}}

{{- define "firedrill.leaseName" -}}
{{- default (include "firedrill.operator.name" .) .Values.operator.leaderElection.leaseName -}}
{{- end -}}

{{- define "firedrill.labels" -}}
app.kubernetes.io/part-of: firedrill
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of a component. Call with (list $ "operator"). */}}
{{- define "firedrill.selectorLabels" -}}
app.kubernetes.io/name: firedrill-{{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
{{- end -}}

{{/* repository:tag of an image value. Call with (list $ .Values.operator.image). */}}
{{- define "firedrill.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
