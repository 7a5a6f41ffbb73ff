{{/* Names, labels and images shared by the templates. */}}

{{- define "mis.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The label value that tells this installation's Jobs from another's (at most 26 chars). */}}
{{- define "mis.instance" -}}
{{- .Release.Name | lower | trunc 26 | trimSuffix "-" -}}
{{- end -}}

{{- define "mis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "mis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mis.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) -}}
{{- end -}}

{{/* The MAP's image: repository@digest when a digest is given, else repository:tag. */}}
{{- define "mis.mapImage" -}}
{{- $image := .Values.map.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (toString $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "mis.claimName" -}}
{{- default (printf "%s-payload" (include "mis.fullname" .)) .Values.payload.persistentVolumeClaim.existingClaim -}}
{{- end -}}

{{/* The MIS configuration file, built from the values. */}}
{{- define "mis.config" -}}
{{- $map := .Values.map -}}
{{- $job := .Values.job -}}
{{- $payloadVolume := dict -}}
{{- if .Values.payload.hostPath -}}
{{- $_ := set $payloadVolume "host_path" .Values.payload.hostPath -}}
{{- else -}}
{{- $_ := set $payloadVolume "claim_name" (include "mis.claimName" .) -}}
{{- end -}}
{{- if not (kindIs "invalid" .Values.payload.nodeLocal) -}}
{{- $_ := set $payloadVolume "node_local" .Values.payload.nodeLocal -}}
{{- end -}}
{{- $config := dict
  "backend" "kubernetes"
  "server" (dict
    "host" "0.0.0.0"
    "port" 8000
    "payload_dir" .Values.payload.mountPath
    "max_concurrent" 1
    "max_upload_bytes" .Values.server.maxUploadBytes
    "max_extracted_bytes" .Values.server.maxExtractedBytes
    "max_entries" .Values.server.maxEntries
    "log_level" .Values.server.logLevel
    "log_format" .Values.server.logFormat)
  "map" (dict
    "image" (include "mis.mapImage" .)
    "command" $map.command
    "args" $map.args
    "env" $map.env
    "input_path" $map.inputPath
    "output_path" $map.outputPath
    "resources" $map.resources
    "timeout_seconds" $map.timeoutSeconds)
  "kubernetes" (dict
    "namespace" .Release.Namespace
    "instance" (include "mis.instance" .)
    "payload_volume" $payloadVolume
    "image_pull_policy" $map.image.pullPolicy
    "image_pull_secrets" $map.imagePullSecrets
    "service_account_name" $job.serviceAccountName
    "node_selector" $job.nodeSelector
    "tolerations" $job.tolerations
    "affinity" $job.affinity
    "runtime_class_name" $job.runtimeClassName
    "priority_class_name" $job.priorityClassName
    "extra_volumes" $job.extraVolumes
    "extra_volume_mounts" $job.extraVolumeMounts
    "security_context" $job.securityContext
    "pod_security_context" $job.podSecurityContext
    "ttl_seconds_after_finished" $job.ttlSecondsAfterFinished
    "warm_up" $job.warmUp)
-}}
{{- toYaml $config -}}
{{- end -}}
