# Envoy configurations for scripts/bench-mesh (sourced). Tuned as Envoy's
# "best practices for benchmarking Envoy" FAQ says: circuit breakers out of
# the way, no generated request ids, no dynamic stats (and, since we measure
# overhead over a direct connection, all stats rejected unless
# BENCH_ENVOY_STATS=on), no access log, no overload manager, HTTP/2
# upstream with ample concurrent streams. Run with --concurrency 1.

envoy_stats_config() {
    if [ "${BENCH_ENVOY_STATS:-off}" = on ]; then
        echo "stats_config: {}"
    else
        echo "stats_config: { stats_matcher: { reject_all: true } }"
    fi
}

envoy_circuit_breakers() {
    cat <<YAML
    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_connections: 1000000000
        max_pending_requests: 1000000000
        max_requests: 1000000000
        max_retries: 1000000000
YAML
}

envoy_h2_upstream() {
    cat <<YAML
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: { max_concurrent_streams: 1024 }
YAML
}

# envoy_client_config ADMIN_PORT LISTEN_PORT UPSTREAM_PORT CERT_DIR
# h2c listener on loopback -> mTLS HTTP/2 to the server-side Envoy, whose
# certificate must chain to the mesh CA and carry the echo SPIFFE id.
envoy_client_config() {
    cat <<YAML
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
$(envoy_stats_config)
static_resources:
  listeners:
  - name: outbound
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound
          codec_type: HTTP2
          generate_request_id: false
          http2_protocol_options: { max_concurrent_streams: 1024 }
          route_config:
            virtual_hosts:
            - name: echo
              domains: ["echo.default.svc", "echo.default.svc:*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: echo, timeout: 10s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              dynamic_stats: false
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 1s
$(envoy_circuit_breakers)
$(envoy_h2_upstream)
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $3 } } }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: echo.default.svc
        common_tls_context:
          alpn_protocols: ["h2"]
          tls_certificates:
          - certificate_chain: { filename: "$4/cert.pem" }
            private_key: { filename: "$4/key.pem" }
          validation_context:
            trusted_ca: { filename: "$4/ca.pem" }
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: { exact: "spiffe://cloudsec.local/ns/default/sa/echo" }
YAML
}

# envoy_server_config ADMIN_PORT LISTEN_PORT APP_PORT CERT_DIR
# mTLS listener requiring a client certificate from the mesh CA with a
# SPIFFE id of the trust domain (passed on in x-forwarded-client-cert, as
# our inbound passes x-cloudsec-peer-identity) -> h2c to the application.
envoy_server_config() {
    cat <<YAML
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
$(envoy_stats_config)
static_resources:
  listeners:
  - name: inbound
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: ["h2"]
            tls_certificates:
            - certificate_chain: { filename: "$4/cert.pem" }
              private_key: { filename: "$4/key.pem" }
            validation_context:
              trusted_ca: { filename: "$4/ca.pem" }
              match_typed_subject_alt_names:
              - san_type: URI
                matcher: { prefix: "spiffe://cloudsec.local/" }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          codec_type: HTTP2
          generate_request_id: false
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: { uri: true }
          http2_protocol_options: { max_concurrent_streams: 1024 }
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: app, timeout: 10s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              dynamic_stats: false
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
$(envoy_circuit_breakers)
$(envoy_h2_upstream)
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $3 } } }
YAML
}
