{{/* The labels every object carries (the kustomize base's, so both render the same objects). */}}
{{- define "meshrelay.labels" -}}
app: meshrelay
app.kubernetes.io/part-of: meshrelay
{{- end -}}
