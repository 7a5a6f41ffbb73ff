{{/* Helpers of the monitoring objects (ServiceMonitor, PrometheusRule, dashboard). */}}

{{/* The PromQL label matchers of this release's series: the ServiceMonitor's scrape job is
named after the Service, and the Prometheus Operator adds the namespace. */}}
{{- define "mis.metricsSelector" -}}
{{- printf "job=%q, namespace=%q" (include "mis.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* An alert's runbook: its line in docs/operating.md (`alert` is the alert's name). */}}
{{- define "mis.runbookUrl" -}}
{{- printf "%s#alert-%s" .root.Values.metrics.prometheusRule.runbookUrl (lower .alert) -}}
{{- end -}}

{{/* The token Prometheus sends to /metrics when auth is on: a key of the auth Secret. */}}
{{- define "mis.metricsAuthorization" -}}
{{- if .Values.auth.existingSecret -}}
authorization:
  type: Bearer
  credentials:
    name: {{ .Values.auth.existingSecret }}
    key: {{ .Values.metrics.serviceMonitor.tokenKey }}
{{- end -}}
{{- end -}}
