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
    "log_format" .Values.server.logFormat
    "upload_idle_timeout_seconds" .Values.server.uploadIdleTimeoutSeconds
    "upload_timeout_seconds" .Values.server.uploadTimeoutSeconds
    "shutdown_grace_seconds" (include "mis.shutdownGraceSeconds" . | int64)
    "auth" (include "mis.authSettings" . | fromYaml))
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
    "ephemeral_storage" $job.ephemeralStorage
    "secret_env" $map.secretEnv
    "ttl_seconds_after_finished" $job.ttlSecondsAfterFinished
    "warm_up" $job.warmUp)
-}}
{{- toYaml $config -}}
{{- end -}}


{{/* MIS's auth settings: the tokens file where the existing Secret is mounted, if one is. */}}
{{- define "mis.authSettings" -}}
{{- if .Values.auth.existingSecret -}}
tokens_file: {{ printf "%s/%s" (trimSuffix "/" .Values.auth.mountPath) .Values.auth.key }}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/* The seconds a stop lets the study in flight finish: the value, or the MAP timeout + 30. */}}
{{- define "mis.shutdownGraceSeconds" -}}
{{- if kindIs "invalid" .Values.server.shutdownGraceSeconds -}}
{{- add (ceil .Values.map.timeoutSeconds | int64) 30 -}}
{{- else -}}
{{- ceil .Values.server.shutdownGraceSeconds | int64 -}}
{{- end -}}
{{- end -}}

{{/* The update strategy: the value, else a rolling update when old and new pod can both
mount the payload volume at once, else Recreate (one pod, drained, then the next). */}}
{{- define "mis.strategy" -}}
{{- if .Values.updateStrategy -}}
{{- toYaml .Values.updateStrategy -}}
{{- else -}}
{{- $payload := .Values.payload -}}
{{- $shared := or $payload.hostPath (has "ReadWriteMany" $payload.persistentVolumeClaim.accessModes) (eq (toString $payload.nodeLocal) "false") -}}
{{- if $shared -}}
type: RollingUpdate
rollingUpdate:
  maxSurge: 1
  maxUnavailable: 0
{{- else -}}
type: Recreate
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A byteSize value (an integer, or "10GiB", "500MB") in bytes, as MIS's settings read it. */}}
{{- define "mis.bytes" -}}
{{- $value := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $value -}}
{{- $unit := trim (trimPrefix $number $value) -}}
{{- $factors := dict "" 1 "KB" 1000 "MB" 1000000 "GB" 1000000000 "TB" 1000000000000 "PB" 1000000000000000 "KiB" 1024 "MiB" 1048576 "GiB" 1073741824 "TiB" 1099511627776 "PiB" 1125899906842624 -}}
{{- mulf (float64 $number) (index $factors $unit) | int64 -}}
{{- end -}}

{{/* ingress-nginx annotations that let a study through: the body limit from
server.maxUploadBytes (in MiB, rounded up, plus 1 MiB for the form's framing), uploads streamed
to MIS rather than spooled by nginx, the upstream read timeout above the MAP timeout (plus
ingress.timeoutMarginSeconds for unpacking and the answer's start) and the send timeout
above MIS's own upload idle timeout, and the answer streamed as MIS writes it. */}}
{{- define "mis.nginxAnnotations" -}}
{{- $bytes := include "mis.bytes" .Values.server.maxUploadBytes | int64 -}}
{{- $margin := .Values.ingress.timeoutMarginSeconds | int64 -}}
nginx.ingress.kubernetes.io/proxy-body-size: {{ printf "%dm" (add (div (sub $bytes 1) 1048576) 2) | quote }}
nginx.ingress.kubernetes.io/proxy-request-buffering: "off"
nginx.ingress.kubernetes.io/proxy-buffering: "off"
nginx.ingress.kubernetes.io/proxy-read-timeout: {{ add (ceil .Values.map.timeoutSeconds | int64) $margin | quote }}
nginx.ingress.kubernetes.io/proxy-send-timeout: {{ add (ceil .Values.server.uploadIdleTimeoutSeconds | int64) $margin | quote }}
{{- end -}}
