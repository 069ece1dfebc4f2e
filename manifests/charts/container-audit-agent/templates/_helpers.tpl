{{/* The objects' base name (manifests/ uses audit-agent). */}}
{{- define "caa.fullname" -}}
{{- .Values.fullname | default "audit-agent" | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "caa.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "caa.labels" -}}
app.kubernetes.io/part-of: container-audit-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "caa.selector" -}}
app.kubernetes.io/name: container-audit-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "caa.nodeSelector" -}}
app.kubernetes.io/name: container-audit-agent-node-setup
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The rsyslog snippet that matches the transport. */}}
{{- define "caa.snippet" -}}
{{- if eq .Values.transport "relp" -}}
rsyslog-audit-agent-relp.conf
{{- else if eq .Values.transport "unix-socket" -}}
rsyslog-audit-agent.conf
{{- else -}}
{{- fail (printf "transport must be relp or unix-socket, got %q" .Values.transport) -}}
{{- end -}}
{{- end -}}

{{/* Variables of the env ConfigMap (the output's non-secret settings). */}}
{{- define "caa.envData" -}}
{{- if eq .Values.output.type "s3" -}}
S3_BUCKET: {{ required "output.s3.bucket is required" .Values.output.s3.bucket | quote }}
AWS_REGION: {{ .Values.output.s3.region | quote }}
{{- else if eq .Values.output.type "elasticsearch" -}}
ES_URL: {{ required "output.elasticsearch.url is required" .Values.output.elasticsearch.url | quote }}
{{- end -}}
{{- end -}}
