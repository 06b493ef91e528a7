{{/*
Names, labels and the configuration files of the chart. Every component
runs `cloudsec serve <component>` beside `cloudsec proxy` (a native
sidecar); the TOML both read is rendered here, from values only.
*/}}

{{/* The components with a Deployment, in start order. */}}
{{- define "cloudsec.components" -}}
auth documents audit gateway
{{- end }}

{{/* The components with a database of their own (migration Jobs). */}}
{{- define "cloudsec.databaseComponents" -}}
auth documents audit
{{- end }}

{{- define "cloudsec.fullname" -}}
{{- if contains "cloudsec" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-cloudsec" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* The release's namespace, which is also the mesh namespace of every SPIFFE id. */}}
{{- define "cloudsec.namespace" -}}
{{- $want := .Values.global.kubernetes.namespace | default "" -}}
{{- if and $want (ne $want .Release.Namespace) -}}
{{- fail (printf "global.kubernetes.namespace is %q but the release is being installed in %q: the IRSA roles and Vault roles trust ServiceAccounts of %q only" $want .Release.Namespace $want) -}}
{{- end -}}
{{- .Release.Namespace -}}
{{- end }}

{{/* Selector labels: only name and instance, so an upgrade never changes them. ctx: root, name */}}
{{- define "cloudsec.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* Every label. ctx: root, name */}}
{{- define "cloudsec.labels" -}}
{{ include "cloudsec.selectorLabels" . }}
app.kubernetes.io/component: {{ .name }}
app.kubernetes.io/part-of: cloudsec
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.global.environment }}
cloudsec.io/environment: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Labels of objects that belong to the whole release. */}}
{{- define "cloudsec.releaseLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: cloudsec
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "cloudsec.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository ($i.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end }}

{{/* A TOML basic string (JSON's escapes are TOML's). */}}
{{- define "cloudsec.str" -}}
{{- toJson (toString .) -}}
{{- end }}

{{/* The ServiceAccount name of a component. ctx: root, name */}}
{{- define "cloudsec.sa" -}}
{{- (index .root.Values.components .name).serviceAccount.name | default .name -}}
{{- end }}

{{/* The SPIFFE id of a component. ctx: root, name */}}
{{- define "cloudsec.spiffe" -}}
{{- printf "spiffe://%s/ns/%s/sa/%s" .root.Values.mesh.trustDomain (include "cloudsec.namespace" .root) (include "cloudsec.sa" .) -}}
{{- end }}

{{/* The name in a component's certificate and the outbound route key: <sa>.<ns>.svc. ctx: root, name */}}
{{- define "cloudsec.serverName" -}}
{{- printf "%s.%s.svc" (include "cloudsec.sa" .) (include "cloudsec.namespace" .root) -}}
{{- end }}

{{/* The headless Service of a component's mesh port (its DNS name). ctx: root, name */}}
{{- define "cloudsec.meshDns" -}}
{{- $c := index .root.Values.components .name -}}
{{- printf "%s.%s.svc.%s:%d" .name (include "cloudsec.namespace" .root) .root.Values.clusterDomain (int $c.ports.mesh) -}}
{{- end }}

{{- define "cloudsec.transport" -}}
{{- .Values.aws.events.transport | default .Values.events.transport -}}
{{- end }}

{{/* The URL of database `name` (auth, documents, audit, events). ctx: root, name */}}
{{- define "cloudsec.databaseUrl" -}}
{{- $d := index .root.Values.databases .name -}}
{{- if $d.url -}}
{{- $d.url -}}
{{- else -}}
{{- if not $d.host -}}
{{- fail (printf "databases.%s.host is required (or databases.%s.url)" .name .name) -}}
{{- end -}}
{{- printf "postgres://%s@%s:%d/%s?sslmode=%s" $d.user $d.host (int $d.port) $d.name $d.sslmode -}}
{{- end -}}
{{- end }}

{{/* [secrets] of a component. ctx: root, name, role */}}
{{- define "cloudsec.tomlSecrets" -}}
{{- $s := .root.Values.secrets }}
[secrets]
{{- if eq $s.backend "vault" }}
backend = "vault"

[secrets.vault]
{{- include "cloudsec.tomlVaultBody" . }}
{{- else }}
backend = "local"
dir = {{ include "cloudsec.str" $s.local.dir }}
{{- end }}
{{- end }}

{{/* The keys of a Vault connection (Kubernetes auth). ctx: root, role */}}
{{- define "cloudsec.tomlVaultBody" -}}
{{- $v := .root.Values.secrets.vault }}
address = {{ include "cloudsec.str" $v.address }}
auth = { method = "kubernetes", role = {{ include "cloudsec.str" .role }}, mount = {{ include "cloudsec.str" $v.kubernetesAuthMount }}, jwt_path = "/var/run/secrets/vault/token" }
request_timeout = {{ include "cloudsec.str" $v.requestTimeout }}
{{- with $v.namespace }}
namespace = {{ include "cloudsec.str" . }}
{{- end }}
{{- if $v.caConfigMap }}
ca_cert = "/etc/cloudsec/vault-ca/ca.crt"
{{- end }}
{{- end }}

{{/* [mesh]. ctx: root, name, proxy (bool) */}}
{{- define "cloudsec.tomlMesh" -}}
{{- $m := .root.Values.mesh }}
[mesh]
trust_domain = {{ include "cloudsec.str" $m.trustDomain }}
namespace = {{ include "cloudsec.str" (include "cloudsec.namespace" .root) }}
certificate_lifetime = {{ include "cloudsec.str" $m.certificateLifetime }}
{{- if .proxy }}
service_account = {{ include "cloudsec.str" (include "cloudsec.sa" .) }}
{{- if eq $m.issuer "vault" }}

[mesh.issuer]
backend = "vault"
mount = {{ include "cloudsec.str" $m.vault.mount }}
role = {{ include "cloudsec.str" (printf "%s%s" $m.vault.rolePrefix .name) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cloudsec.tomlTelemetry" -}}
{{- $t := .Values.telemetry }}
[telemetry]
log_format = {{ include "cloudsec.str" $t.logFormat }}
{{- with $t.otlpEndpoint }}
otlp_endpoint = {{ include "cloudsec.str" . }}
{{- end }}
{{- end }}

{{/* [tokens]. ctx: root, name */}}
{{- define "cloudsec.tomlTokens" -}}
{{- $t := .root.Values.tokens }}
[tokens]
issuer = {{ include "cloudsec.str" $t.issuer }}
audience = {{ include "cloudsec.str" $t.audience }}
access_ttl = {{ include "cloudsec.str" $t.accessTtl }}
revocation_interval = {{ include "cloudsec.str" $t.revocationInterval }}
{{- if ne .name "auth" }}
auth_uri = {{ include "cloudsec.str" (printf "http://127.0.0.1:%d" (int .root.Values.proxy.outboundPort)) }}
auth_server_name = {{ include "cloudsec.str" (include "cloudsec.serverName" (dict "root" .root "name" "auth")) }}
{{- end }}
{{- with .root.Values.aws.auth.cognito }}
{{- if .userPoolId }}
cognito = { user_pool_id = {{ include "cloudsec.str" .userPoolId }}, client_ids = [{{ include "cloudsec.str" .clientId }}]{{ with .issuer }}, issuer = {{ include "cloudsec.str" . }}{{ end }}, tenant_group_prefix = {{ include "cloudsec.str" $t.cognitoTenantGroupPrefix }} }
{{- end }}
{{- end }}
{{- end }}

{{/* [events]. ctx: root */}}
{{- define "cloudsec.tomlEvents" -}}
{{- $e := .Values.events }}
{{- $a := .Values.aws.events }}
{{- $transport := include "cloudsec.transport" . }}
[events]
transport = {{ include "cloudsec.str" $transport }}
provisioning = {{ include "cloudsec.str" ($a.provisioning | default $e.provisioning) }}
{{- if eq $transport "embedded" }}
database_url = {{ include "cloudsec.str" (include "cloudsec.databaseUrl" (dict "root" . "name" "events")) }}
{{- else if eq $transport "sns" }}
topic = {{ include "cloudsec.str" ($a.topic | default $e.topic) }}
{{- else }}
event_bus = {{ include "cloudsec.str" ($a.eventBus | default $e.eventBus) }}
{{- end }}
{{- if and (ne $transport "embedded") .Values.global.aws.region }}

[events.aws]
region = {{ include "cloudsec.str" .Values.global.aws.region }}
{{- end }}
{{- end }}

{{/* [database_credentials.<db>] for Vault's database engine. ctx: root, db */}}
{{- define "cloudsec.tomlDbCredentials" -}}
{{- if and (eq .root.Values.databases.credentials "vault") (not (index .root.Values.databases .db).url) }}

[database_credentials.{{ .db }}]
mount = {{ include "cloudsec.str" .root.Values.databases.vaultMount }}
role = {{ include "cloudsec.str" .db }}
check_interval = {{ include "cloudsec.str" .root.Values.databases.checkInterval }}
{{- end }}
{{- end }}

{{/* The app's configuration: `cloudsec serve <name>` (and `migrate`). ctx: root, name */}}
{{- define "cloudsec.appConfigRaw" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $c := index $root.Values.components $name }}
{{- $embedded := eq (include "cloudsec.transport" $root) "embedded" -}}
# cloudsec serve {{ $name }}: rendered by the chart {{ $root.Chart.Name }}-{{ $root.Chart.Version }}.
# Secrets appear only as vault: references; docs/configuration.md has every key.
{{ include "cloudsec.tomlMesh" (dict "root" $root "name" $name "proxy" false) }}

{{ include "cloudsec.tomlTelemetry" $root }}

{{ include "cloudsec.tomlTokens" (dict "root" $root "name" $name) }}

{{ include "cloudsec.tomlEvents" $root }}

{{ include "cloudsec.tomlSecrets" (dict "root" $root "name" $name "role" $name) }}
{{- if ne $name "gateway" }}
{{- include "cloudsec.tomlDbCredentials" (dict "root" $root "db" $name) }}
{{- end }}
{{- if $embedded }}
{{- include "cloudsec.tomlDbCredentials" (dict "root" $root "db" "events") }}
{{- end }}

[{{ $name }}]
{{- if eq $name "gateway" }}
listen = {{ include "cloudsec.str" (printf "0.0.0.0:%d" (int $c.ports.public)) }}
{{- else }}
grpc_listen = {{ include "cloudsec.str" (printf "127.0.0.1:%d" (int $c.ports.app)) }}
{{- end }}
admin_listen = {{ include "cloudsec.str" (printf "0.0.0.0:%d" (int $c.ports.admin)) }}
shutdown_grace = {{ include "cloudsec.str" $c.shutdownGrace }}
{{- if ne $name "gateway" }}
database_url = {{ include "cloudsec.str" (include "cloudsec.databaseUrl" (dict "root" $root "name" $name)) }}
{{- end }}
{{- if eq $name "documents" }}
page_token_key = {{ include "cloudsec.str" $c.pageTokenKey }}
{{- end }}
{{- if eq $name "audit" }}
queue = {{ include "cloudsec.str" ($root.Values.aws.audit.queue | default $c.queue) }}
{{- end }}
{{- if eq $name "gateway" }}
{{- if $root.Values.redis.host }}
redis_url = {{ include "cloudsec.str" $root.Values.redis.urlRef }}
{{- end }}
{{- if $c.tlsSecretName }}
listen_tls = { cert_file = "/etc/cloudsec/rest/tls.crt", key_file = "/etc/cloudsec/rest/tls.key" }
{{- end }}
{{- range $svc, $peer := dict "cloudsec.auth.v1.AuthService" "auth" "cloudsec.documents.v1.DocumentService" "documents" "cloudsec.audit.v1.AuditService" "audit" }}

[gateway.upstreams.{{ include "cloudsec.str" $svc }}]
uri = {{ include "cloudsec.str" (printf "http://127.0.0.1:%d" (int $root.Values.proxy.outboundPort)) }}
server_name = {{ include "cloudsec.str" (include "cloudsec.serverName" (dict "root" $root "name" $peer)) }}
{{- end }}
{{- with $c.passwordCalls }}
{{- $admission := . }}
{{- /* The anonymous calls that run argon2id: a storm of them queues here, not in auth. */}}
{{- range $method := list "Login" "SignUp" "ConfirmForgotPassword" }}

[gateway.routes."cloudsec.auth.v1.AuthService/{{ $method }}"]
concurrency = { limit = {{ int $admission.limit }}, queue = {{ int $admission.queue }}, queue_timeout = {{ include "cloudsec.str" $admission.queueTimeout }} }
{{- end }}
{{- end }}
{{- end }}
{{- if eq $name "documents" }}
{{- $keys := $c.content.keys | default $root.Values.secrets.backend }}

[documents.content]
transit_mount = {{ include "cloudsec.str" $root.Values.secrets.vault.transitMount }}
create_keys = {{ $c.content.createKeys }}

[documents.content.store]
{{- if $root.Values.aws.documents.bucket }}
backend = "s3"
bucket = {{ include "cloudsec.str" $root.Values.aws.documents.bucket }}
{{- with $root.Values.global.aws.region }}
region = {{ include "cloudsec.str" . }}
{{- end }}
provisioning = "existing"
{{- else if eq $c.content.store "local" }}
backend = "local"
dir = "/var/lib/cloudsec/objects"
{{- else }}
{{- fail "components.documents.content.store is s3 but aws.documents.bucket is empty" }}
{{- end }}

[documents.content.keys]
{{- if eq $keys "vault" }}
backend = "vault"

[documents.content.keys.vault]
{{- include "cloudsec.tomlVaultBody" (dict "root" $root "role" $name) }}
{{- else }}
backend = "local"
dir = "/var/lib/cloudsec/documents-keys"
{{- end }}
{{- end }}
{{- with $c.extraConfig }}

# components.{{ $name }}.extraConfig
{{ . }}
{{- end }}
{{- end }}

{{/* Who may call a component's inbound, by gRPC service or method. ctx: root, name */}}
{{- define "cloudsec.tomlAllow" -}}
{{- $root := .root }}
{{- $id := dict }}
{{- range $n := splitList " " (include "cloudsec.components" $root) }}
{{- $_ := set $id $n (include "cloudsec.str" (include "cloudsec.spiffe" (dict "root" $root "name" $n))) }}
{{- end }}
{{- if eq .name "auth" }}
"cloudsec.auth.v1.AuthService" = [{{ $id.gateway }}]
"cloudsec.auth.v1.AuthService/GetJwks" = [{{ $id.gateway }}, {{ $id.documents }}, {{ $id.audit }}]
"cloudsec.auth.v1.AuthService/ListTokenRevocations" = [{{ $id.gateway }}, {{ $id.documents }}, {{ $id.audit }}]
{{- else if eq .name "documents" }}
"cloudsec.documents.v1.DocumentService" = [{{ $id.gateway }}]
{{- else if eq .name "audit" }}
"cloudsec.audit.v1.AuditService" = [{{ $id.gateway }}]
{{- end }}
{{- end }}

{{/* The peers a component calls through its outbound listener. */}}
{{- define "cloudsec.peers" -}}
{{- if eq . "gateway" }}auth documents audit{{ else if eq . "auth" }}{{ else }}auth{{ end }}
{{- end }}

{{/* The sidecar's configuration: `cloudsec proxy`. ctx: root, name */}}
{{- define "cloudsec.proxyConfigRaw" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $c := index $root.Values.components $name }}
{{- $p := $root.Values.proxy -}}
# cloudsec proxy beside {{ $name }}: rendered by the chart {{ $root.Chart.Name }}-{{ $root.Chart.Version }}.
{{ include "cloudsec.tomlMesh" (dict "root" $root "name" $name "proxy" true) }}

{{ include "cloudsec.tomlTelemetry" $root }}
{{- if eq $root.Values.mesh.issuer "vault" }}

[secrets]
backend = "vault"

[secrets.vault]
{{- include "cloudsec.tomlVaultBody" (dict "root" $root "role" $name) }}
{{- end }}

[proxy]
admin_listen = {{ include "cloudsec.str" (printf "0.0.0.0:%d" (int $p.adminPort)) }}
shutdown_grace = {{ include "cloudsec.str" $p.shutdownGrace }}
worker_threads = {{ int $p.workerThreads }}
{{- if eq $root.Values.mesh.issuer "certManager" }}
tls = { ca_file = "/var/run/cloudsec/trust/ca.crt", cert_file = "/var/run/cloudsec/mesh/tls.crt", key_file = "/var/run/cloudsec/mesh/tls.key" }
{{- end }}
{{- if ne $name "gateway" }}

[proxy.inbound]
listen = {{ include "cloudsec.str" (printf "0.0.0.0:%d" (int $c.ports.mesh)) }}
app = {{ include "cloudsec.str" (printf "127.0.0.1:%d" (int $c.ports.app)) }}

[proxy.inbound.authorization]
mode = {{ include "cloudsec.str" $p.authorizationMode }}

[proxy.inbound.authorization.allow]
{{- include "cloudsec.tomlAllow" . }}
{{- end }}
{{- $peers := include "cloudsec.peers" $name }}
{{- if $peers }}

[proxy.outbound]
listen = {{ include "cloudsec.str" (printf "127.0.0.1:%d" (int $p.outboundPort)) }}
{{- range $peer := splitList " " $peers }}

[proxy.outbound.destinations.{{ include "cloudsec.str" (include "cloudsec.serverName" (dict "root" $root "name" $peer)) }}]
dns = {{ include "cloudsec.str" (include "cloudsec.meshDns" (dict "root" $root "name" $peer)) }}
identity = {{ include "cloudsec.str" (include "cloudsec.spiffe" (dict "root" $root "name" $peer)) }}
{{- end }}
{{- if eq $name "gateway" }}

[proxy.outbound.routes.routes."cloudsec.auth.v1.AuthService/GetJwks"]
retry = { retryable = true }
{{- end }}
{{- end }}
{{- end }}

{{/* Restricted Pod Security Standard, for every container. */}}
{{- define "cloudsec.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "cloudsec.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Whether the pods of component `name` log in to Vault with their ServiceAccount token. ctx: root, name */}}
{{- define "cloudsec.needsVaultToken" -}}
{{- if or (eq .root.Values.secrets.backend "vault") (eq .root.Values.mesh.issuer "vault") }}true{{ end }}
{{- end }}

{{/* The projected, audience-bound ServiceAccount token for Vault's Kubernetes auth. */}}
{{- define "cloudsec.vaultTokenVolume" -}}
- name: vault-token
  projected:
    defaultMode: 0440
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: {{ int .Values.secrets.vault.tokenExpirationSeconds }}
          {{- with .Values.secrets.vault.tokenAudience }}
          audience: {{ . | quote }}
          {{- end }}
{{- end }}

{{/* Checks of values that the schema cannot express. */}}
{{- define "cloudsec.validate" -}}
{{- $_ := include "cloudsec.namespace" . -}}
{{- if and (eq .Values.mesh.issuer "certManager") (not .Values.mesh.trustBundle) -}}
{{- fail "mesh.trustBundle is required with mesh.issuer = certManager (the sidecars trust only it)" -}}
{{- end -}}
{{- if and (eq .Values.mesh.issuer "vault") (ne .Values.secrets.backend "vault") -}}
{{- fail "mesh.issuer = vault needs secrets.backend = vault (the sidecars log in to Vault's PKI)" -}}
{{- end -}}
{{- if and (eq .Values.mesh.issuer "certManager") .Values.mesh.certManager.createCertificates (not .Values.capabilities.certManager) -}}
{{- fail "mesh.certManager.createCertificates needs capabilities.certManager = true (the Certificate CRD), or make the Secrets another way and set it false" -}}
{{- end -}}
{{- if and (eq .Values.secrets.backend "local") (eq .Values.databases.credentials "vault") -}}
{{- fail "databases.credentials = vault needs secrets.backend = vault" -}}
{{- end -}}
{{- end }}

{{/* The configuration files, with runs of blank lines squeezed. ctx: root, name */}}
{{- define "cloudsec.appConfig" -}}
{{- regexReplaceAll "\n(\\s*\n)+" (include "cloudsec.appConfigRaw" .) "\n\n" | trim -}}
{{- end }}

{{- define "cloudsec.proxyConfig" -}}
{{- regexReplaceAll "\n(\\s*\n)+" (include "cloudsec.proxyConfigRaw" .) "\n\n" | trim -}}
{{- end }}

{{/* The data volume of a component (ctx: its values). */}}
{{- define "cloudsec.dataVolume" -}}
{{- if .data.claimName -}}
persistentVolumeClaim:
  claimName: {{ .data.claimName }}
{{- else -}}
emptyDir:
  sizeLimit: {{ .data.sizeLimit }}
{{- end -}}
{{- end }}
