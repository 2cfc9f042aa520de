{{/* Chart name, truncated to a DNS label. */}}
{{- define "spore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "spore.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "spore.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "spore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spore
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (operator, node-installer, node-uninstall). */}}
{{- define "spore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spore.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "spore.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "spore.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spore.operator.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{- define "spore.nodeInstaller.image" -}}
{{- printf "%s:%s" .Values.nodeInstaller.image.repository (default .Chart.AppVersion .Values.nodeInstaller.image.tag) }}
{{- end }}

{{- define "spore.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Arguments shared by the installer and the uninstall hook. */}}
{{- define "spore.nodeInstaller.args" -}}
- node-install
- {{ printf "--preset=%s" .Values.nodeInstaller.preset | quote }}
- {{ printf "--install-dir=%s" .Values.nodeInstaller.installDir | quote }}
- {{ printf "--restart-timeout-seconds=%v" .Values.nodeInstaller.restartTimeoutSeconds | quote }}
- {{ printf "--containerd-restart=%s" .Values.nodeInstaller.containerdRestart | quote }}
{{- with .Values.nodeInstaller.containerdConfig }}
- {{ printf "--containerd-config=%s" . | quote }}
{{- end }}
{{- with .Values.nodeInstaller.containerdSocket }}
- {{ printf "--containerd-socket=%s" . | quote }}
{{- end }}
{{- with .Values.nodeInstaller.restartCommand }}
- {{ printf "--restart-command=%s" . | quote }}
{{- end }}
{{- end }}

{{/* Environment of the installer containers. */}}
{{- define "spore.nodeInstaller.env" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: RUST_LOG
  value: {{ .Values.nodeInstaller.logLevel | quote }}
{{- end }}

{{/* The privileged pod parts shared by the installer and the uninstall hook: host PID (to reach
     PID 1 for the containerd restart) and the host root at /host. */}}
{{- define "spore.nodeInstaller.securityContext" -}}
privileged: true
runAsUser: 0
{{- end }}
