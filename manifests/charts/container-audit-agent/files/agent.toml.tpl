# container-audit-agent on a Kubernetes node, rendered by the Helm chart
# (manifests/charts/container-audit-agent) from its values; the same config as manifests/overlays.

[agent]
data_dir = "/var/lib/audit-agent"          # hostPath: the buffer survives pod restarts
node_name = "${NODE_NAME:-localhost}"      # downward API (spec.nodeName)
log_level = {{ .Values.agent.logLevel | quote }}
log_format = "json"
http_listen = "0.0.0.0:{{ .Values.agent.httpPort }}"  # /healthz /readyz /metrics (GET only)
grace_period = {{ .Values.agent.gracePeriod | quote }}  # < terminationGracePeriodSeconds

[buffer]
type = "disk"
chunk_bytes = {{ .Values.buffer.chunkBytes | quote }}
flush_interval = {{ .Values.buffer.flushInterval | quote }}
max_bytes = {{ .Values.buffer.maxBytes | quote }}
sync = {{ .Values.buffer.sync | quote }}
when_full = {{ .Values.buffer.whenFull | quote }}

# RELP from the node's rsyslog (transport: relp, the default; the pod on the host network, so
# 127.0.0.1 is the node's loopback). Idle under transport: unix-socket.
[[inputs]]
type = "syslog"
mode = "relp"
listen = "127.0.0.1:{{ .Values.agent.relpPort }}"
tag = "syslog"
format = "auto"
# Docker's syslog driver tag "{{ "{{" }}.ImageName{{ "}}" }}/{{ "{{" }}.Name{{ "}}" }}/{{ "{{" }}.ID{{ "}}" }}"; image names may hold "/".
tag_pattern = '^(?P<image>.+)/(?P<container_name>[^/]+)/(?P<container_id>[0-9a-f]{12})$'

# The UNIX datagram socket (transport: unix-socket); idle under RELP.
[[inputs]]
type = "syslog"
mode = "unix_dgram"
path = "/var/run/audit-agent/syslog.sock"
socket_mode = "0666"                       # rsyslog may run as user syslog (Ubuntu)
tag = "syslog"
format = "auto"
tag_pattern = '^(?P<image>.+)/(?P<container_name>[^/]+)/(?P<container_id>[0-9a-f]{12})$'
{{- if .Values.tail.enabled }}

# Container logs from the node's /var/log (read-only); positions in data_dir.
[[inputs]]
type = "tail"
paths = [{{ range $i, $p := .Values.tail.paths }}{{ if $i }}, {{ end }}{{ $p | quote }}{{ end }}]
format = "auto"                            # CRI or Docker json-file, decided per file
tag = "kube.${namespace_name}.${pod_name}.${container_name}"
read_from_head = false                     # on the very first start only: later files whole
{{- end }}

{{- if .Values.auditd.enabled }}

# Kernel audit records (auditd's syslog plugin through the node's rsyslog) become one record per
# event, with `container_id` from the process's cgroup (hostPID). Other records pass untouched.
[[filters]]
type = "auditd"
match = "syslog"
{{- end }}
{{- if .Values.kubernetes.enabled }}

# The pod of each record's container, from a watch of this node's pods (the chart's ClusterRole:
# get, list, watch on pods and namespaces). Runs before audit, so alerts name the pod.
[[filters]]
type = "kubernetes"
match = "*"
node_name = "${NODE_NAME}"
wait_for_metadata = {{ .Values.kubernetes.waitForMetadata | quote }}
{{- end }}

[[filters]]
type = "audit"
match = "*"

[[outputs]]
{{- if eq .Values.output.type "s3" }}
type = "s3"
match = "*"
bucket = "${S3_BUCKET}"
region = "${AWS_REGION:-us-east-1}"
{{- else if eq .Values.output.type "elasticsearch" }}
type = "elasticsearch"
match = "*"
hosts = ["${ES_URL}"]
index = {{ .Values.output.elasticsearch.index | quote }}
id_mode = "hash"                           # a resent chunk overwrites instead of duplicating
{{- if .Values.output.elasticsearch.existingSecret }}
user = "${ES_USERNAME}"
password = "${ES_PASSWORD}"
{{- end }}
{{- else }}
type = "stdout"
match = "*"
{{- end }}
{{- with .Values.extraConfig }}

# extraConfig (values)
{{ . }}
{{- end }}
