{{- define "rmq-exporter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rmq-exporter.sidecarName" -}}
{{- printf "%s-sidecar" (include "rmq-exporter.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rmq-exporter.labels" -}}
app.kubernetes.io/part-of: rmq-exporter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rmq-exporter.scaledObjects" -}}
{{- range $i, $doc := .Values.scaledObjects }}
---
{{ tpl (toYaml $doc) $ }}
{{- end }}
{{- end -}}

{{- define "rmq-exporter.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "rmq-exporter.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- /* ---------------------------------------------------------------------------------------
  Web config (TLS and basic auth of /metrics, /healthz, /readyz), values `web`.
--------------------------------------------------------------------------------------------- */ -}}

{{- define "rmq-exporter.webConfigName" -}}
{{- printf "%s-web-config" (include "rmq-exporter.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* "true" when the pods get a web config file, else empty. */ -}}
{{- define "rmq-exporter.web.enabled" -}}
{{- if or .Values.web.tls.enabled .Values.web.basicAuthUsers .Values.web.headers -}}true{{- end -}}
{{- end -}}

{{- /* Fails on values the binaries or the monitors would refuse or could not use. */ -}}
{{- define "rmq-exporter.web.validate" -}}
{{- $tls := .Values.web.tls -}}
{{- if $tls.enabled -}}
{{- if not $tls.secretName -}}
{{- fail "web.tls.secretName is required with web.tls.enabled (a kubernetes.io/tls Secret: tls.crt, tls.key)" -}}
{{- end -}}
{{- if not (has ($tls.clientAuthType | default "NoClientCert") (list "NoClientCert" "VerifyClientCertIfGiven" "RequireAndVerifyClientCert")) -}}
{{- fail (printf "web.tls.clientAuthType %q: supported are NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert" $tls.clientAuthType) -}}
{{- end -}}
{{- if not (has ($tls.minVersion | default "TLS12") (list "TLS12" "TLS13")) -}}
{{- fail (printf "web.tls.minVersion %q: supported are TLS12, TLS13" $tls.minVersion) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (eq $tls.clientAuthType "RequireAndVerifyClientCert") (not .Values.serviceMonitor.tlsConfig.certSecretName) -}}
{{- fail "serviceMonitor.tlsConfig.certSecretName is required with web.tls.clientAuthType RequireAndVerifyClientCert (Prometheus' client certificate)" -}}
{{- end -}}
{{- else if or $tls.clientAuthType $tls.minVersion -}}
{{- fail "web.tls.clientAuthType and web.tls.minVersion need web.tls.enabled" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.web.basicAuthUsers (not .Values.serviceMonitor.basicAuth.secretName) -}}
{{- fail "serviceMonitor.basicAuth.secretName is required with web.basicAuthUsers (the credentials Prometheus sends)" -}}
{{- end -}}
{{- end -}}

{{- /* The web config file: the exporter-toolkit format, paths of the mounted TLS Secret. */ -}}
{{- define "rmq-exporter.webConfig" -}}
{{- $cfg := dict -}}
{{- $tls := .Values.web.tls -}}
{{- if $tls.enabled -}}
{{- $server := dict "cert_file" "/etc/rmq-web/tls/tls.crt" "key_file" "/etc/rmq-web/tls/tls.key" -}}
{{- with $tls.clientAuthType -}}
{{- $_ := set $server "client_auth_type" . -}}
{{- if ne . "NoClientCert" -}}
{{- $_ := set $server "client_ca_file" "/etc/rmq-web/tls/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- with $tls.minVersion -}}
{{- $_ := set $server "min_version" . -}}
{{- end -}}
{{- $_ := set $cfg "tls_server_config" $server -}}
{{- end -}}
{{- with .Values.web.headers -}}
{{- $_ := set $cfg "http_server_config" (dict "headers" .) -}}
{{- end -}}
{{- with .Values.web.basicAuthUsers -}}
{{- $_ := set $cfg "basic_auth_users" . -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- /* Volumes of the web config and the TLS Secret, for both pods. */ -}}
{{- define "rmq-exporter.web.volumes" -}}
{{- if include "rmq-exporter.web.enabled" . }}
- name: web-config
  secret:
    secretName: {{ include "rmq-exporter.webConfigName" . }}
{{- if .Values.web.tls.enabled }}
- name: web-tls
  secret:
    secretName: {{ .Values.web.tls.secretName }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* Their mounts: whole directories, not subPath, so that Secret updates reach the pods. */ -}}
{{- define "rmq-exporter.web.volumeMounts" -}}
{{- if include "rmq-exporter.web.enabled" . }}
- name: web-config
  mountPath: /etc/rmq-web/config
  readOnly: true
{{- if .Values.web.tls.enabled }}
- name: web-tls
  mountPath: /etc/rmq-web/tls
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "rmq-exporter.web.configFile" -}}
/etc/rmq-web/config/web-config.yml
{{- end -}}

{{- /* prometheus.io/* annotations; argument: dict "ctx" . "port" PORT. */ -}}
{{- define "rmq-exporter.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- if .ctx.Values.web.tls.enabled }}
prometheus.io/scheme: https
{{- end }}
{{- end -}}

{{- /* A probe of port http-metrics; argument: dict "ctx" . "path" PATH. httpGet (HTTPS with TLS)
  unless the endpoints want credentials or a client certificate, which the kubelet cannot
  present: then tcpSocket. */ -}}
{{- define "rmq-exporter.probe" -}}
{{- $web := .ctx.Values.web -}}
{{- if or $web.basicAuthUsers (and $web.tls.enabled (eq $web.tls.clientAuthType "RequireAndVerifyClientCert")) -}}
tcpSocket:
  port: http-metrics
{{- else -}}
httpGet:
  path: {{ .path }}
  port: http-metrics
  {{- if $web.tls.enabled }}
  scheme: HTTPS
  {{- end }}
{{- end -}}
{{- end -}}

{{- /* ---------------------------------------------------------------------------------------
  TLS to RocketMQ, values `rocketmqTls`.
--------------------------------------------------------------------------------------------- */ -}}

{{- define "rmq-exporter.rocketmqTls.env" -}}
{{- $t := .Values.rocketmqTls -}}
{{- if $t.enabled }}
{{- if and (not $t.secretName) (not $t.insecureSkipVerify) }}
{{- fail "rocketmqTls.secretName is required with rocketmqTls.enabled (ca.crt: the image bundles no CA roots), unless rocketmqTls.insecureSkipVerify" }}
{{- end }}
- name: RMQ_EXPORTER_TLS
  value: "true"
{{- with $t.secretName }}
- name: RMQ_EXPORTER_TLS_CA_FILE
  value: /etc/rmq-exporter/rocketmq-tls/ca.crt
{{- if $t.clientCert }}
- name: RMQ_EXPORTER_TLS_CERT_FILE
  value: /etc/rmq-exporter/rocketmq-tls/tls.crt
- name: RMQ_EXPORTER_TLS_KEY_FILE
  value: /etc/rmq-exporter/rocketmq-tls/tls.key
{{- end }}
{{- end }}
{{- with $t.serverName }}
- name: RMQ_EXPORTER_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
- name: RMQ_EXPORTER_TLS_VERIFY_HOSTNAME
  value: {{ $t.verifyHostname | quote }}
- name: RMQ_EXPORTER_TLS_INSECURE_SKIP_VERIFY
  value: {{ $t.insecureSkipVerify | quote }}
{{- end }}
{{- end -}}
