{{/* Chart name, overridable. */}}
{{- define "dakr-reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (DNS label limit). If the release name
already contains the chart name it is not repeated.
*/}}
{{- define "dakr-reconciler.fullname" -}}
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

{{- define "dakr-reconciler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dakr-reconciler.labels" -}}
helm.sh/chart: {{ include "dakr-reconciler.chart" . }}
{{ include "dakr-reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dakr
{{- end }}

{{/* Selector labels: immutable on a Deployment, so they never include versions. */}}
{{- define "dakr-reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dakr-reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dakr-reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dakr-reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dakr-reconciler.policiesConfigMapName" -}}
{{- default (printf "%s-policies" (include "dakr-reconciler.fullname" .)) .Values.policies.existingConfigMap }}
{{- end }}

{{- define "dakr-reconciler.leaseName" -}}
{{- default (printf "%s-leader" (include "dakr-reconciler.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "dakr-reconciler.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Fails the render early instead of installing a reconciler that cannot run. */}}
{{- define "dakr-reconciler.validate" -}}
{{- if not (has .Values.mode (list "gitops" "direct")) }}
{{- fail (printf "mode must be gitops or direct, got %q" .Values.mode) }}
{{- end }}
{{- if not (hasPrefix "localhost:" .Values.opa.addr) }}
{{- fail (printf "opa.addr must bind to localhost (the Data API must not leave the pod), got %q" .Values.opa.addr) }}
{{- end }}
{{- end }}
