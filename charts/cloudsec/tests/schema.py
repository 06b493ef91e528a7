import json
def obj(props, required=(), extra=False, desc=None):
    o = {"type": "object", "additionalProperties": extra, "properties": props}
    if required: o["required"] = list(required)
    if desc: o["description"] = desc
    return o
S = {"type": "string"}
B = {"type": "boolean"}
def port(d=None):
    p = {"type": "integer", "minimum": 1, "maximum": 65535}
    if d: p["description"] = d
    return p
dur = {"type": "string", "pattern": "^([0-9]+(ns|us|ms|s|m|h|d))+$", "description": "a duration such as 10s, 5m, 24h"}
secs = {"type": "string", "pattern": "^[0-9]+s$", "description": "whole seconds, such as 10s"}
ref = {"type": "string", "pattern": "^vault:[^/#]+/[^#]+#.+$", "description": "a vault:<mount>/<path>#<field> reference"}
strmap = {"type": "object", "additionalProperties": {"type": "string"}}
anyobj = {"type": "object"}
resources = {"$ref": "#/$defs/resources"}
defs = {
  "resources": obj({
     "requests": obj({"cpu": {"type": ["string", "number"]}, "memory": S}),
     "limits": obj({"cpu": {"type": ["string", "number"]}, "memory": S}),
  }, required=["requests", "limits"]),
  "serviceAccount": obj({
     "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
     "roleArn": {"type": "string", "pattern": "^(arn:aws[a-z-]*:iam::[0-9]{12}:role/.+)?$"},
     "annotations": strmap,
  }),
  "autoscaling": obj({
     "enabled": B,
     "minReplicas": {"type": "integer", "minimum": 1},
     "maxReplicas": {"type": "integer", "minimum": 1},
     "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
  }),
  "pdb": obj({"enabled": B, "maxUnavailable": {"type": ["integer", "string"]}}),
  "spread": obj({"enabled": B, "maxSkew": {"type": "integer", "minimum": 1},
                 "whenUnsatisfiable": {"enum": ["ScheduleAnyway", "DoNotSchedule"]}}),
  "database": obj({
     "host": S, "port": port(), "name": S,
     "sslmode": {"enum": ["disable", "prefer", "require", "verify-ca", "verify-full"]},
     "user": S,
     "url": {"type": "string", "pattern": "^(|vault:[^/#]+/[^#]+#.+|(postgres|postgresql|sqlite)://[^:@/]*@?[^@]*)$",
             "description": "a URL without a password, or a vault: reference"},
  }),
}
def common(ports, extra_props):
    p = {
      "replicas": {"type": "integer", "minimum": 1},
      "serviceAccount": {"$ref": "#/$defs/serviceAccount"},
      "ports": ports,
      "shutdownGrace": secs,
      "resources": resources,
      "autoscaling": {"$ref": "#/$defs/autoscaling"},
      "podDisruptionBudget": {"$ref": "#/$defs/pdb"},
      "topologySpread": {"$ref": "#/$defs/spread"},
      "data": obj({"claimName": {"type": "string", "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"},
                   "sizeLimit": {"type": "string", "pattern": "^[0-9]+(Ki|Mi|Gi|Ti)$"}}),
      "env": {"type": "array", "items": obj({"name": S, "value": S, "valueFrom": anyobj}, required=["name"])},
      "extraConfig": S,
      "podAnnotations": strmap,
      "nodeSelector": strmap,
      "tolerations": {"type": "array", "items": anyobj},
      "affinity": anyobj,
    }
    p.update(extra_props)
    return obj(p)
svc_ports = obj({"mesh": port(), "app": port(), "admin": port()}, required=["mesh", "app", "admin"])
mig = obj({"enabled": B})
components = obj({
  "auth": common(svc_ports, {"migrations": mig}),
  "documents": common(svc_ports, {"migrations": mig, "pageTokenKey": ref,
      "content": obj({"store": {"enum": ["local", "s3"]}, "keys": {"enum": ["", "vault", "local"]}, "createKeys": B})}),
  "audit": common(svc_ports, {"migrations": mig, "queue": S}),
  "gateway": common(obj({"public": port(), "admin": port()}, required=["public", "admin"]),
      {"tlsSecretName": S, "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
       # null (Helm's way to drop a default) renders no admission limit.
       "passwordCalls": obj({"limit": {"type": "integer", "minimum": 1},
                             "queue": {"type": "integer", "minimum": 0, "maximum": 100000},
                             "queueTimeout": {"type": "string", "pattern": "^[1-9][0-9]*s$",
                                              "description": "whole seconds, more than 0 and below the gateway's 30 s request timeout, such as 5s"}},
                            required=["limit", "queue", "queueTimeout"]) | {"type": ["object", "null"]}}),
  "mailer": obj({"serviceAccount": {"$ref": "#/$defs/serviceAccount"}}),
})
schema = {
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "cloudsec chart values",
  "type": "object",
  "additionalProperties": False,
  "$defs": defs,
  "properties": {
    "global": {"type": "object", "additionalProperties": True,
       "description": "shared with a parent chart; any key is accepted, these are read",
       "properties": {
         "environment": S,
         "aws": {"type": "object", "properties": {"region": S, "accountId": {"type": "string", "pattern": "^([0-9]{12})?$"}}},
         "kubernetes": {"type": "object", "properties": {"clusterName": S, "namespace": S}},
       }},
    "enabled": B,
    "image": obj({"repository": {"type": "string", "minLength": 1}, "tag": S,
                  "digest": {"type": "string", "pattern": "^(sha256:[0-9a-f]{64})?$"},
                  "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}),
    "imagePullSecrets": {"type": "array", "items": S},
    "clusterDomain": S,
    "mesh": obj({
       "trustDomain": {"type": "string", "pattern": "^[a-z0-9._-]+$"},
       "certificateLifetime": dur,
       "issuer": {"enum": ["vault", "certManager"]},
       "vault": obj({"mount": S, "rolePrefix": S}),
       "certManager": obj({"createCertificates": B,
          "issuerRef": obj({"name": S, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": S}, required=["name"]),
          "duration": S, "renewBefore": S}),
       "trustBundle": {"type": "string", "pattern": "^(|\\s*-----BEGIN CERTIFICATE-----[\\s\\S]*)$"},
    }),
    "proxy": obj({"adminPort": port(), "outboundPort": port(), "shutdownGrace": secs,
                  "authorizationMode": {"enum": ["deny", "authenticated", "audit"]},
                  "workerThreads": {"type": "integer", "minimum": 1, "maximum": 64},
                  "resources": resources}),
    "secrets": obj({
       "backend": {"enum": ["vault", "local"]},
       "vault": obj({"address": {"type": "string", "pattern": "^https?://"}, "kubernetesAuthMount": S,
                     "tokenAudience": S, "tokenExpirationSeconds": {"type": "integer", "minimum": 600},
                     "namespace": S, "caConfigMap": S, "requestTimeout": dur,
                     "transitMount": S}),
       "local": obj({"dir": S}),
    }),
    "migrations": obj({"serviceAccountSuffix": {"type": "string", "pattern": "^-[a-z0-9-]+$"}}),
    "tokens": obj({"issuer": S, "audience": S, "accessTtl": dur, "revocationInterval": dur,
                   "cognitoTenantGroupPrefix": S}),
    "telemetry": obj({"logFormat": {"enum": ["json", "pretty"]}, "logFilter": S,
                      "otlpEndpoint": {"type": "string", "pattern": "^(|https?://.+)$"}}),
    "events": obj({"transport": {"enum": ["embedded", "sns", "eventbridge"]},
                   "provisioning": {"enum": ["create", "existing"]}, "topic": S, "eventBus": S}),
    "databases": obj({"credentials": {"enum": ["vault", "static"]}, "vaultMount": S, "checkInterval": dur,
                      "auth": {"$ref": "#/$defs/database"}, "documents": {"$ref": "#/$defs/database"},
                      "audit": {"$ref": "#/$defs/database"}, "events": {"$ref": "#/$defs/database"}}),
    "redis": obj({"host": S, "port": port(), "tls": B, "authSecretArn": S, "urlRef": ref}),
    "aws": obj({
       "events": obj({"transport": {"enum": ["", "embedded", "sns", "eventbridge"]},
                      "provisioning": {"enum": ["", "create", "existing"]},
                      "topic": S, "topicArn": S, "fifoTopic": {"type": ["string", "null"]},
                      "fifoTopicArn": {"type": ["string", "null"]}, "eventBus": S, "eventBusArn": S,
                      "queues": strmap, "queueNames": strmap, "dlqs": strmap}),
       "documents": obj({"bucket": S, "kmsKeyId": S}),
       "audit": obj({"table": S, "signingKeyId": S, "queue": S}),
       "auth": obj({"kmsKeyId": S, "mailerKeyId": S,
                    "cognito": obj({"userPoolId": S, "clientId": S, "issuer": S})}),
       "inbox": obj({"table": S}),
       "mailer": obj({"queue": S, "kmsKeyId": S}),
    }),
    "edge": obj({"targetGroupArn": S, "loadBalancerSecurityGroupId": S, "url": S, "apiUrl": S}),
    "observability": obj({"adotRoleArn": S, "logGroups": strmap}),
    "capabilities": obj({"prometheusOperator": B, "certManager": B, "awsLoadBalancerController": B}),
    "monitoring": obj({
       "serviceMonitor": obj({"enabled": B, "interval": S, "labels": strmap}),
       "podMonitor": obj({"enabled": B, "interval": S, "labels": strmap}),
       "prometheusRules": obj({"enabled": B, "labels": strmap}),
       "dashboards": obj({"enabled": B, "labels": strmap}),
    }),
    "networkPolicy": obj({"enabled": B, "monitoringNamespace": S,
                          "publicFrom": {"type": "array", "items": anyobj},
                          "externalEgress": {"type": "array", "items": anyobj}}),
    "components": components,
  },
}
print(json.dumps(schema, indent=2))
