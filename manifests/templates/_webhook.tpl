{{/*
The live-migration admission webhook (liveMigration.enabled): names and labels. Its pods
carry their own app.kubernetes.io/name, so that the operator Deployment's selector never
matches them (and the other way round).
*/}}
{{- /* At most 59 characters: room for the Secret's "-tls" within the 63 of a name. */}}
{{- define "dakr-reconciler.webhookName" -}}
{{- printf "%s-webhook" (include "dakr-reconciler.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}

{{- define "dakr-reconciler.webhookSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-webhook" (include "dakr-reconciler.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "dakr-reconciler.webhookLabels" -}}
helm.sh/chart: {{ include "dakr-reconciler.chart" . }}
{{ include "dakr-reconciler.webhookSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dakr
{{- end }}

{{/* Its own ServiceAccount (read-only rights), or the one named when the chart creates none. */}}
{{- define "dakr-reconciler.webhookServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- include "dakr-reconciler.webhookName" . }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding tls.crt, tls.key and ca.crt, whoever issues them. */}}
{{- define "dakr-reconciler.webhookSecretName" -}}
{{- printf "%s-tls" (include "dakr-reconciler.webhookName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The names the serving certificate is valid for: the Service, as the API server calls it. */}}
{{- define "dakr-reconciler.webhookDNSNames" -}}
{{- $svc := include "dakr-reconciler.webhookName" . }}
{{- $ns := .Release.Namespace }}
{{- toJson (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) }}
{{- end }}

{{- define "dakr-reconciler.webhookCertDir" -}}
/etc/dakr/webhook-tls
{{- end }}
