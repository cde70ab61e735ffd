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

{{/*
The mode the operator really runs in: gitops without a repository is audit (recommendations
are recorded and decided, nothing is written), as the reconciler itself decides.
*/}}
{{- define "dakr-reconciler.effectiveMode" -}}
{{- if and (eq .Values.mode "gitops") (not .Values.gitops.repoURL) }}audit{{ else }}{{ .Values.mode }}{{ end }}
{{- end }}

{{/* Whether the operator may change workloads (every mode but audit). */}}
{{- define "dakr-reconciler.writes" -}}
{{- if ne (include "dakr-reconciler.effectiveMode" .) "audit" }}true{{ end }}
{{- end }}

{{/* Where the policies ConfigMap is mounted into the reconciler when there is no sidecar. */}}
{{- define "dakr-reconciler.policyDir" -}}
/etc/dakr/policies
{{- end }}

{{/*
The policies ConfigMap's data (when the chart creates it), as YAML: the library's Rego
files from files/policies/ under their paths with "/" made "." (ConfigMap keys cannot hold
"/"; OPA reads a module's package, not its file name), policies.files on top, and one
data.yaml: the library's, with policies.data deep-merged into it (one file, because OPA
refuses two data files that set the same key). Without overrides the library's data.yaml
is shipped as it is, comments included.
*/}}
{{- define "dakr-reconciler.policiesData" -}}
{{- $prefix := "files/policies/" }}
{{- $out := dict }}
{{- range $path, $_ := .Files.Glob (printf "%s**.rego" $prefix) }}
{{- $key := $path | trimPrefix $prefix | replace "/" "." }}
{{- if hasKey $out $key }}
{{- fail (printf "policy library: two files map to ConfigMap key %q" $key) }}
{{- end }}
{{- $_ := set $out $key ($.Files.Get $path) }}
{{- end }}
{{- range $key, $source := .Values.policies.files }}
{{- $_ := set $out $key $source }}
{{- end }}
{{- $library := .Files.Get (printf "%sdata.yaml" $prefix) }}
{{- if .Values.policies.data }}
{{- include "dakr-reconciler.checkPolicyData" (dict "path" "policies.data" "library" (fromYaml $library) "override" .Values.policies.data) }}
{{- $merged := mergeOverwrite (fromYaml $library) (deepCopy .Values.policies.data) }}
{{- $_ := set $out "data.yaml" (printf "# files/policies/data.yaml of the chart (the library's parameters, documented\n# there) with the release's policies.data merged in.\n%s" (toYaml $merged)) }}
{{- else }}
{{- $_ := set $out "data.yaml" $library }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Refuses an override whose type cannot be what the library means: `--set` turns 0.8 into the
string "0.8" (and has no empty list), and Rego compares a number with a string without
error (numbers sort before strings), so such a value would silently change decisions.
*/}}
{{- define "dakr-reconciler.checkPolicyData" -}}
{{- range $key, $value := .override }}
{{- $path := printf "%s.%s" $.path $key }}
{{- if and (kindIs "map" $.library) (hasKey $.library $key) }}
{{- $library := index $.library $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $library) }}
{{- include "dakr-reconciler.checkPolicyData" (dict "path" $path "library" $library "override" $value) }}
{{- else if and (kindIs "string" $value) (or (kindIs "float64" $library) (kindIs "int64" $library) (kindIs "int" $library)) }}
{{- fail (printf "%s: %q is a string where the library has a number: use --set-json '%s=%s' or a values file (--set makes 0.8 a string)" $path $value $path $value) }}
{{- else if and (kindIs "string" $value) (kindIs "slice" $library) }}
{{- fail (printf "%s: %q is a string where the library has a list: use {a,b} with --set, or --set-json '%s=[...]' (an empty list needs --set-json)" $path $value $path) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails the render early instead of installing a reconciler that cannot run. */}}
{{- define "dakr-reconciler.validate" -}}
{{- if not (has .Values.mode (list "gitops" "direct" "audit")) }}
{{- fail (printf "mode must be gitops, direct or audit, got %q" .Values.mode) }}
{{- end }}
{{- if not (hasPrefix "localhost:" .Values.opa.addr) }}
{{- fail (printf "opa.addr must bind to localhost (the Data API must not leave the pod), got %q" .Values.opa.addr) }}
{{- end }}
{{- if not (kindIs "map" .Values.policies.data) }}
{{- fail "policies.data must be a map of overrides of the library's data.yaml, e.g. {config: {scope: {includeNamespaces: [team-a]}}}" }}
{{- end }}
{{- range $key, $_ := .Values.policies.files }}
{{- if not (hasSuffix ".rego" $key) }}
{{- fail (printf "policies.files: %q must be a .rego file (parameters go under policies.data)" $key) }}
{{- end }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $key) }}
{{- fail (printf "policies.files: %q is not a valid ConfigMap key (letters, digits, '-', '_', '.')" $key) }}
{{- end }}
{{- end }}
{{- if not .Values.opa.image.tag }}
{{- fail "opa.image.tag must be set (an explicit OPA version, never latest)" }}
{{- end }}
{{- end }}
