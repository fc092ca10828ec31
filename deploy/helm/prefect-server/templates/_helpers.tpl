{{- define "prefect-server.fullname" -}}
{{- printf "%s-prefect-server" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prefect-server.labels" -}}
app.kubernetes.io/name: prefect-server
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "prefect-server.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecret }}{{- else -}}{{ include "prefect-server.fullname" . }}-database{{- end -}}
{{- end -}}

{{/* The environment every pod shares. */}}
{{- define "prefect-server.env" -}}
- name: PREFECT_API_DATABASE_CONNECTION_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "prefect-server.databaseSecret" . }}
      key: {{ .Values.database.existingSecretKey }}
- name: PREFECT_API_DATABASE_POOL_SIZE
  value: {{ .Values.database.poolSize | quote }}
- name: PREFECT_SERVER_API_HOST
  value: "0.0.0.0"
- name: PREFECT_SERVER_API_PORT
  value: {{ .Values.service.port | quote }}
- name: PREFECT_MESSAGING_BROKER
  value: nats
- name: PREFECT_NATS_URL
  value: {{ .Values.nats.url | quote }}
- name: PREFECT_NATS_STREAM
  value: {{ .Values.nats.stream | quote }}
- name: PREFECT_SERVER_LOGGING_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: PREFECT_UI_ENABLED
  value: {{ .Values.ui.enabled | quote }}
- name: PREFECT_UI_API_URL
  value: {{ default (printf "http://%s:%v/api" (include "prefect-server.fullname" .) .Values.service.port) .Values.ui.apiUrl | quote }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}
