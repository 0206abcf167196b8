{{/*
The image of a component: flowscope.image (dict "root" $ "name" "flowscope-agent").
*/}}
{{- define "flowscope.image" -}}
{{ .root.Values.image.registry }}/{{ .name }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{/*
Labels of every object the chart renders from a template. The RBAC objects
come from artifacts/deploy/rbac as they are and keep their own.
*/}}
{{- define "flowscope.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: flowscope
{{- end }}

{{- define "flowscope.checkMode" -}}
{{- if not (has .Values.certificates.mode (list "self-managed" "cert-manager" "manual")) }}
{{- fail (printf "certificates.mode must be self-managed, cert-manager or manual, not %q" .Values.certificates.mode) }}
{{- end }}
{{- end }}

{{- define "flowscope.selfManaged" -}}
{{- if eq .Values.certificates.mode "self-managed" }}true{{ end }}
{{- end }}
