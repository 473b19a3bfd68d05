{{/* Chart name, truncated to the 63 characters a label value may hold. */}}
{{- define "dig-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: `<release>-dig-operator` unless the release already says it. */}}
{{- define "dig-operator.fullname" -}}
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

{{- define "dig-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "dig-operator.labels" -}}
helm.sh/chart: {{ include "dig-operator.chart" . }}
{{ include "dig-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dig-network
{{- end }}

{{/* Labels that select the operator pods; never change them, a Deployment's selector is immutable. */}}
{{- define "dig-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dig-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dig-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dig-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dig-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A data-plane image the operator gives networks that name none: (list $ {repository, tag}). */}}
{{- define "dig-operator.dataPlaneImage" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{- define "dig-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "dig-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dig-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "dig-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The MutatingWebhookConfiguration is cluster-scoped, so its name carries the namespace. */}}
{{- define "dig-operator.webhookConfigName" -}}
{{- printf "%s-%s-inject" .Release.Namespace (include "dig-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dig-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "dig-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dig-operator.leaseName" -}}
{{- printf "%s-leader" (include "dig-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* True when the Prometheus Operator's API is served (helm template: `--api-versions monitoring.coreos.com/v1`). */}}
{{- define "dig-operator.hasPrometheusOperator" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}
