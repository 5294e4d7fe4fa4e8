{{/*
Shared names and labels. templates/rbac.yaml (owned by the operator) uses mesp.fullname,
mesp.serviceAccountName, mesp.labels and mesp.selectorLabels, so keep their meaning stable.
*/}}

{{/* Chart name, overridable with nameOverride; 63 chars is the DNS label limit. */}}
{{- define "mesp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart> unless the release name already contains the chart
name (so `helm install mesp ./charts/mesp` gives "mesp", not "mesp-mesp").
*/}}
{{- define "mesp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version (the "+" of SemVer build metadata is not allowed in labels). */}}
{{- define "mesp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object the chart creates. */}}
{{- define "mesp.labels" -}}
helm.sh/chart: {{ include "mesp.chart" . }}
{{ include "mesp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mesp
{{- end }}

{{/* Immutable selector labels (a Deployment's selector cannot change after install). */}}
{{- define "mesp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mesp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount the operator runs as (created by the chart or supplied by the user). */}}
{{- define "mesp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mesp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image reference; the tag defaults to the chart's appVersion. */}}
{{- define "mesp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Directory the model volume is mounted at when the artifact does not come from the image. */}}
{{- define "mesp.modelMountPath" -}}
/var/lib/mesp/model
{{- end }}

{{/*
Path passed to `mesp operator --model`, or empty for the artifact baked into the image
(the operator then loads its built-in default).
*/}}
{{- define "mesp.modelPath" -}}
{{- if eq .Values.model.source "image" }}
{{- .Values.model.image.path }}
{{- else if eq .Values.model.source "pvc" }}
{{- $sub := trimAll "/" .Values.model.pvc.subPath }}
{{- if $sub }}{{ printf "%s/%s" (include "mesp.modelMountPath" .) $sub }}{{ else }}{{ include "mesp.modelMountPath" . }}{{ end }}
{{- else }}
{{- include "mesp.modelMountPath" . }}
{{- end }}
{{- end }}

{{/*
PromQL presets of the operator (mesp_operator.prometheus.PRESETS), repeated here so the Grafana
dashboard can plot the actual invocations the operator forecasts from. tests/unit/test_chart.py fails
when the two copies differ.
*/}}
{{- define "mesp.presets" -}}
knative-legacy:
  query: 'sum by (namespace_name, service_name) (increase(revision_request_count{$selector}[1m]))'
  namespaceLabel: namespace_name
  serviceLabel: service_name
knative-otel:
  query: 'sum by (k8s_namespace_name, kn_service_name) (increase(kn_serving_invocation_duration_seconds_count[1m]) * on (job, instance) group_left (k8s_namespace_name, kn_service_name) max by (job, instance, k8s_namespace_name, kn_service_name) (target_info{$selector}))'
  namespaceLabel: k8s_namespace_name
  serviceLabel: kn_service_name
knative-otel-activator:
  query: 'sum by (k8s_namespace_name, kn_service_name) (increase(kn_serving_invocation_duration_seconds_count{$selector}[1m]))'
  namespaceLabel: k8s_namespace_name
  serviceLabel: kn_service_name
{{- end }}
