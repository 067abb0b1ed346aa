{{/* Names and labels. */}}
{{- define "arroyo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "arroyo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The labels that select the pods of one block: (dict "root" $ "block" NAME). */}}
{{- define "arroyo.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .block }}
{{- end -}}

{{- define "arroyo.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "arroyo.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "arroyo.fullname" .)) -}}
{{- end -}}

{{/*
${NAME:-default} and ${NAME} in .text, expanded as Arroyo would in the container: from
.env (the chart's `env`), else the default, else "".
*/}}
{{- define "arroyo.expand" -}}
{{- $text := toString .text -}}
{{- range $ref := regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}" $text -1 -}}
{{- $name := regexReplaceAll "^\\$\\{([A-Za-z0-9_]+).*$" $ref "${1}" -}}
{{- $value := "" -}}
{{- if hasKey $.env $name -}}
{{- $value = toString (get $.env $name) -}}
{{- else if contains ":-" $ref -}}
{{- $value = regexReplaceAll "^\\$\\{[A-Za-z0-9_]+:-(.*)\\}$" $ref "${1}" -}}
{{- end -}}
{{- $text = replace $ref $value $text -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/*
A broker URL in parts, as YAML: scheme, userinfo, hosts (HOST:PORT[,HOST:PORT]), path
(without the first "/"), query (a map).
*/}}
{{- define "arroyo.url" -}}
{{- $scheme := regexFind "^[a-z][a-z0-9+.-]*" .url -}}
{{- $rest := trimPrefix (printf "%s://" $scheme) .url -}}
{{- $query := dict -}}
{{- if contains "?" $rest -}}
{{- $split := splitn "?" 2 $rest -}}
{{- $rest = $split._0 -}}
{{- range $pair := splitList "&" $split._1 -}}
{{- $value := "" -}}
{{- if contains "=" $pair -}}
{{- $value = regexReplaceAll "^[^=]*=" $pair "" -}}
{{- end -}}
{{- $_ := set $query (regexReplaceAll "=.*$" $pair "") $value -}}
{{- end -}}
{{- end -}}
{{- $hosts := $rest -}}
{{- $path := "" -}}
{{- if contains "/" $rest -}}
{{- $split := splitn "/" 2 $rest -}}
{{- $hosts = $split._0 -}}
{{- $path = $split._1 -}}
{{- end -}}
{{- $userinfo := "" -}}
{{- if contains "@" $hosts -}}
{{- $userinfo = regexReplaceAll "@[^@]*$" $hosts "" -}}
{{- $hosts = regexReplaceAll "^.*@" $hosts "" -}}
{{- end -}}
{{- dict "scheme" $scheme "userinfo" $userinfo "hosts" $hosts "path" $path "query" $query | toYaml -}}
{{- end -}}

{{/*
Everything the templates need of one block, as YAML: (dict "root" $ "block" BLOCK), where
BLOCK is one entry of pipeline.blocks. Keys: name (the block's name), id (its name as a
Kubernetes name), settings (defaults merged with blocks.NAME), url (the listener's,
expanded), listener (the URL in parts), partitions, trigger.
*/}}
{{- define "arroyo.block" -}}
{{- $root := .root -}}
{{- $block := .block -}}
{{- $name := required "every block of pipeline.blocks needs a name" $block.name | toString -}}
{{- $id := $name | lower | replace "_" "-" | replace "." "-" -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $id) -}}
{{- fail (printf "block %q: its name must make a Kubernetes name (letters, digits, '-', '_', '.')" $name) -}}
{{- end -}}
{{- $settings := mergeOverwrite (deepCopy $root.Values.defaults) (deepCopy (get $root.Values.blocks $name | default dict)) -}}
{{- $listener := required (printf "block %q needs a listener" $name) $block.listener -}}
{{- $endpoint := $listener -}}
{{- if kindIs "string" $listener -}}
{{- $endpoint = dict "url" $listener -}}
{{- end -}}
{{- $url := include "arroyo.expand" (dict "text" $endpoint.url "env" $root.Values.env) -}}
{{- $parts := include "arroyo.url" (dict "url" $url) | fromYaml -}}
{{- $scaling := $settings.autoscaling -}}
{{- $trigger := $scaling.trigger -}}
{{- if not $trigger -}}
{{- $trigger = "prometheus" -}}
{{- if eq $parts.scheme "kafka" -}}
{{- $trigger = "kafka" -}}
{{- else if has $parts.scheme (list "redis" "rediss") -}}
{{- $trigger = "redis-streams" -}}
{{- else if has $parts.scheme (list "amqp" "amqps") -}}
{{- $trigger = "rabbitmq" -}}
{{- end -}}
{{- end -}}
{{- $partitions := $scaling.partitions -}}
{{- if and (not $partitions) $endpoint.create -}}
{{- $partitions = include "arroyo.expand" (dict "text" (get $endpoint.create "partitions" | default "") "env" $root.Values.env) -}}
{{- end -}}
{{- dict "name" $name "id" $id "settings" $settings "url" $url "listener" $parts "partitions" ($partitions | default "" | toString) "trigger" $trigger | toYaml -}}
{{- end -}}

{{/* The blocks as a YAML list of arroyo.block, in pipeline order. */}}
{{- define "arroyo.blocks" -}}
{{- $blocks := list -}}
{{- range $block := .Values.pipeline.blocks -}}
{{- $blocks = append $blocks (include "arroyo.block" (dict "root" $ "block" $block) | fromYaml) -}}
{{- end -}}
{{- dict "blocks" $blocks | toYaml -}}
{{- end -}}
