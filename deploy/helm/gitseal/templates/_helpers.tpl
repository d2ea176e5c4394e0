{{/*
Names. The default fullname is the release name when it contains "gitseal", else
"<release>-gitseal"; `helm install gitseal-controller …` therefore names everything
gitseal-controller, which is what `kubeseal --controller-name` and the CLI docs use.
*/}}
{{- define "gitseal.name" -}}
{{- default "gitseal-controller" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gitseal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "gitseal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gitseal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitseal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gitseal.labels" -}}
helm.sh/chart: {{ include "gitseal.chart" . }}
{{ include "gitseal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gitseal
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gitseal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gitseal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The controller's ServiceAccount as an RBAC subject. */}}
{{- define "gitseal.subject" -}}
- kind: ServiceAccount
  name: {{ include "gitseal.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "gitseal.leaseName" -}}
{{- default (include "gitseal.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "gitseal.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The SealedSecret API groups the controller serves. */}}
{{- define "gitseal.groups" -}}
{{- if .Values.bitnamiCompat }}[gitseal.dev, bitnami.com]{{ else }}[gitseal.dev]{{ end }}
{{- end }}

{{/*
Rules for the namespaces the controller watches: read SealedSecrets and report on them,
produce Secrets (server-side apply = patch) and watch them for drift, publish Events. No
delete: a Secret goes away through its owner reference.
*/}}
{{- define "gitseal.watchRules" -}}
- apiGroups: {{ include "gitseal.groups" . }}
  resources: [sealedsecrets]
  verbs: [get, list, watch]
- apiGroups: {{ include "gitseal.groups" . }}
  resources: [sealedsecrets/status]
  verbs: [get, update, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* Checks that fail the render with a message instead of producing a broken install. */}}
{{- define "gitseal.validate" -}}
{{- if and .Values.rbac.namespaced (empty .Values.watchNamespaces) }}
{{- fail "rbac.namespaced=true needs watchNamespaces: the Roles are created only in those namespaces" }}
{{- end }}
{{- if and .Values.aggregatedApi.enabled (empty .Values.aggregatedApi.tlsSecretName) }}
{{- fail "aggregatedApi.enabled needs aggregatedApi.tlsSecretName: a kubernetes.io/tls Secret for <aggregatedApi.serviceName>.<namespace>.svc" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled=true, or two controllers reconcile at once" }}
{{- end }}
{{- if and .Values.pkcs11.enabled .Values.pkcs11.tokenLabel (not (kindIs "invalid" .Values.pkcs11.slot)) }}
{{- fail "pkcs11.tokenLabel and pkcs11.slot both name the token: set one of them (the controller refuses both)" }}
{{- end }}
{{- end }}

{{/*
Seconds in a Go-style duration ("720h", "30m", "90s", "1h30m"), for alert thresholds; 0 for
"0"/"0s"/"" (renewal off).
*/}}
{{- define "gitseal.durationSeconds" -}}
{{- $total := 0 }}
{{- $d := toString . }}
{{- if not (regexMatch "^([0-9]+[hms])*$|^0$" $d) }}
{{- fail (printf "cannot read the duration %q: use hours, minutes and seconds, like 720h or 1h30m" $d) }}
{{- end }}
{{- range regexFindAll "[0-9]+[hms]" $d -1 }}
{{- $n := int (trimSuffix "h" (trimSuffix "m" (trimSuffix "s" .))) }}
{{- if hasSuffix "h" . }}{{ $total = add $total (mul $n 3600) }}{{ else if hasSuffix "m" . }}{{ $total = add $total (mul $n 60) }}{{ else }}{{ $total = add $total $n }}{{ end }}
{{- end }}
{{- $total }}
{{- end }}
