//! A new RPC with an annotation appears on REST without touching gateway/:
//! the test contract `tests/proto/cloudsec/echo/v1/echo.proto` is compiled
//! here at run time, served by a generic echo server over mTLS, and reached
//! through the gateway with plain HTTP/JSON.

// clippy.toml allows unwrap in `#[test]` functions only; the harness and
// the echo server below are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cloudsec_gateway::{DynamicCodec, Gateway, GatewayConfig, GatewayError, Upstream};
use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use cloudsec_runtime::shutdown::Shutdown;
use cloudsec_runtime::tls::MeshTls;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;

const ECHO_SERVICE: &str = "cloudsec.echo.v1.EchoService";
/// 2^53 + 1: a JSON number would lose the last digit.
const BIG: i64 = 9_007_199_254_740_993;
const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The echo contract, compiled with protox like the platform's own.
fn echo_descriptor_set() -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiler =
        protox::Compiler::new([root.join("tests/proto"), root.join("../proto")]).unwrap();
    compiler.include_imports(true);
    compiler
        .open_files(["cloudsec/echo/v1/echo.proto"])
        .unwrap();
    // protox's own encoding keeps the google.api.http extension options.
    compiler.encode_file_descriptor_set()
}

/// A gRPC server for any method of the echo contract, written against
/// descriptors only: it decodes with the gateway's codec and answers with
/// what it received.
#[derive(Clone)]
struct EchoServer {
    pool: DescriptorPool,
}

impl NamedService for EchoServer {
    const NAME: &'static str = ECHO_SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for EchoServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let name = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let method = self
            .pool
            .get_service_by_name(ECHO_SERVICE)
            .and_then(|s| s.methods().find(|m| m.name() == name));
        Box::pin(async move {
            let Some(method) = method else {
                return Ok(tonic::Status::unimplemented(name).into_http());
            };
            let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(method.input()));
            let handler = tower::service_fn(move |request| echo(method.clone(), request));
            Ok(grpc.unary(handler, req).await)
        })
    }
}

async fn echo(
    method: MethodDescriptor,
    request: tonic::Request<DynamicMessage>,
) -> Result<tonic::Response<DynamicMessage>, tonic::Status> {
    if method.name() == "Fail" {
        let mut details = tonic_types::ErrorDetails::new();
        details
            .add_bad_request_violation("item.title", "must not be empty")
            .set_error_info(
                "EMPTY_TITLE",
                "echo.cloudsec",
                [("hint".to_owned(), "x".to_owned())],
            );
        return Err(
            <tonic::Status as tonic_types::StatusExt>::with_error_details(
                tonic::Code::InvalidArgument,
                "invalid item",
                details,
            ),
        );
    }
    let output = method.output();
    let mut reply = DynamicMessage::new(output.clone());
    reply.set_field_by_name("method", Value::String(method.name().to_owned()));
    reply.set_field_by_name(
        "request_json",
        Value::String(serde_json::to_string(request.get_ref()).unwrap()),
    );
    let metadata = reply
        .get_field_by_name_mut("metadata")
        .unwrap()
        .as_map_mut()
        .unwrap();
    for key in [
        "authorization",
        "x-request-id",
        "grpc-timeout",
        "traceparent",
    ] {
        if let Some(value) = request.metadata().get(key).and_then(|v| v.to_str().ok()) {
            metadata.insert(
                prost_reflect::MapKey::String(key.to_owned()),
                Value::String(value.to_owned()),
            );
        }
    }
    reply.set_field_by_name("big", Value::I64(BIG));
    reply.set_field_by_name("kind", Value::EnumNumber(2));
    let input = request.into_inner();
    if let Some(item) = input.get_field_by_name("item")
        && input.has_field_by_name("item")
    {
        reply.set_field_by_name("item", item.into_owned());
    } else if let Some(id) = input.get_field_by_name("id") {
        let mut item = DynamicMessage::new(
            output
                .get_field_by_name("item")
                .unwrap()
                .kind()
                .as_message()
                .unwrap()
                .clone(),
        );
        item.set_field_by_name("id", id.into_owned());
        item.set_field_by_name("size_bytes", Value::I64(BIG));
        reply.set_field_by_name("item", Value::Message(item));
    }
    Ok(tonic::Response::new(reply))
}

async fn mesh_cert(ca: &LocalCa, name: &str) -> (SpiffeId, MeshTls) {
    let id = SpiffeId::new("cloudsec.local", "default", name).unwrap();
    let tls = ca
        .issue(&id, Duration::from_secs(3600))
        .await
        .unwrap()
        .mesh_tls();
    (id, tls)
}

/// A gateway in front of the echo server, both on port 0.
struct Harness {
    base: String,
    admin: SocketAddr,
    routes: Vec<String>,
    http: reqwest::Client,
    shutdown: Shutdown,
    gateway: JoinHandle<Result<(), GatewayError>>,
    echo: JoinHandle<()>,
}

impl Harness {
    async fn start(upstream_down: bool) -> Self {
        // An OTLP endpoint that nothing serves: spans get real trace ids
        // (so `traceparent` is injected) and are never exported, as the
        // tests end before the first batch.
        let _ = cloudsec_runtime::telemetry::init(
            "gateway-test",
            cloudsec_runtime::telemetry::LogFormat::Test,
            Some("http://127.0.0.1:9".to_owned()),
        );
        let descriptors = echo_descriptor_set();
        let ca = LocalCa::generate().unwrap();
        let (echo_id, echo_tls) = mesh_cert(&ca, "echo").await;
        let (_, gateway_tls) = mesh_cert(&ca, "gateway").await;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = listener.local_addr().unwrap();
        let echo = if upstream_down {
            // Nothing listens on the address any more.
            drop(listener);
            tokio::spawn(async {})
        } else {
            let pool = DescriptorPool::decode(descriptors.as_slice()).unwrap();
            let routes = tonic::service::Routes::new(EchoServer { pool });
            let server = tonic::transport::Server::builder()
                .tls_config(echo_tls.server_config())
                .unwrap()
                .add_routes(routes)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
            tokio::spawn(async move { server.await.unwrap() })
        };

        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            ..GatewayConfig::default()
        };
        config.upstreams.insert(
            ECHO_SERVICE.to_owned(),
            Upstream {
                uri: format!("https://{echo_addr}"),
                server_name: echo_id.dns_name(),
            },
        );
        let gateway = Gateway::build(
            &config,
            &[cloudsec_proto::FILE_DESCRIPTOR_SET, descriptors.as_slice()],
            gateway_tls,
        )
        .await
        .unwrap();
        let base = format!("http://{}", gateway.local_addr());
        let admin = gateway.admin_addr();
        let routes = gateway.routes();
        let shutdown = Shutdown::new();
        let gateway = tokio::spawn(gateway.run_until_stopped(shutdown.clone()));

        let http = reqwest::Client::new();
        // Bounded polling of readiness, not a sleep.
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("http://{admin}/ready")).send().await
                && r.status() == 200
            {
                ready = true;
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ready, "gateway never became ready");
        Self {
            base,
            admin,
            routes,
            http,
            shutdown,
            gateway,
            echo,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.gateway)
            .await
            .expect("gateway drained in time")
            .unwrap()
            .unwrap();
        // The admin listener closes after the drain (a fresh client, so
        // no pooled connection is reused).
        assert!(
            reqwest::Client::new()
                .get(format!("http://{}/ready", self.admin))
                .send()
                .await
                .is_err()
        );
        self.echo.abort();
    }
}

/// Status, `x-request-id` and the JSON body of a response.
async fn parts(response: reqwest::Response) -> (u16, Option<String>, Json) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "status {status}"
    );
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json::<Json>().await.unwrap();
    (status, request_id, body)
}

/// Sends `body` with `Transfer-Encoding: chunked` over raw HTTP/1.1 and
/// returns the response's status line.
async fn chunked_post(base: &str, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    for chunk in body.chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The gateway may answer and close before reading everything.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn request_of(reply: &Json) -> Json {
    serde_json::from_str(reply["requestJson"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn annotated_rpcs_appear_on_rest() {
    let h = Harness::start(false).await;

    for route in [
        "GET /v1/items/{id} -> cloudsec.echo.v1.EchoService/GetItem",
        "GET /v1/shelves/{shelf}/items/{id} -> cloudsec.echo.v1.EchoService/GetItem",
        "POST /v1/items -> cloudsec.echo.v1.EchoService/CreateItem",
        "PATCH /v1/items/{item.id} -> cloudsec.echo.v1.EchoService/UpdateItem",
        "DELETE /v1/items/{id} -> cloudsec.echo.v1.EchoService/DeleteItem",
        "POST /v1/items/{id}:archive -> cloudsec.echo.v1.EchoService/ArchiveItem",
        "GET /v1/files/{path=**} -> cloudsec.echo.v1.EchoService/GetFile",
    ] {
        assert!(
            h.routes.contains(&route.to_owned()),
            "{route} not in {:#?}",
            h.routes
        );
    }
    assert!(!h.routes.iter().any(|r| r.contains("Hidden")));
    // The platform's services have no upstream here, so no routes.
    assert!(!h.routes.iter().any(|r| r.contains("DocumentService")));

    // GET: path variable, query parameters of every kind, the
    // authorization header and the client's request id.
    let response = h
        .http
        .get(h.url(
            "/v1/items/it%2F1?page_size=5&tags=a&tags=b%20c&kind=KIND_SMALL&filter.owner=ann&filter.minSize=3&verbose=true&max_bytes=9007199254740993",
        ))
        .header("authorization", "Bearer t0ken")
        .header("x-request-id", "client-id.42")
        .header("traceparent", CLIENT_TRACEPARENT)
        .send()
        .await
        .unwrap();
    let (status, request_id, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(request_id.as_deref(), Some("client-id.42"));
    assert_eq!(reply["method"], "GetItem");
    assert_eq!(reply["big"], "9007199254740993");
    assert_eq!(reply["kind"], "KIND_LARGE");
    assert_eq!(reply["item"]["sizeBytes"], "9007199254740993");
    assert_eq!(reply["metadata"]["authorization"], "Bearer t0ken");
    assert_eq!(reply["metadata"]["x-request-id"], "client-id.42");
    assert!(reply["metadata"]["grpc-timeout"].is_string(), "{reply}");
    // The gateway's span continues the client's trace and is the parent
    // the service sees.
    let traceparent = reply["metadata"]["traceparent"].as_str().unwrap();
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(fields[2], "00f067aa0ba902b7");
    assert_eq!(
        request_of(&reply),
        json!({
            "id": "it/1", "pageSize": 5, "tags": ["a", "b c"], "kind": "KIND_SMALL",
            "filter": {"owner": "ann", "minSize": 3}, "verbose": true,
            "maxBytes": "9007199254740993",
        })
    );

    // An additional binding, and a generated request id when the client's
    // is not sane.
    let response = h
        .http
        .get(h.url("/v1/shelves/s1/items/i2"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let (status, request_id, reply) = parts(response).await;
    assert_eq!(status, 200);
    let request_id = request_id.unwrap();
    assert_ne!(request_id, "bad id with spaces");
    assert_eq!(reply["metadata"]["x-request-id"], request_id.as_str());
    assert_eq!(request_of(&reply), json!({"id": "i2", "shelf": "s1"}));

    // POST with body "*"; int64 accepted as a string, enum by name, bytes.
    let response = h
        .http
        .post(h.url("/v1/items"))
        .json(&json!({
            "item": {"title": "t", "sizeBytes": "12", "kind": "KIND_SMALL", "labels": ["x"], "content": "aGk="},
            "note": "n",
        }))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["method"], "CreateItem");
    assert_eq!(
        reply["item"],
        json!({"title": "t", "sizeBytes": "12", "kind": "KIND_SMALL", "labels": ["x"], "content": "aGk="})
    );

    // An empty body on a body RPC is `{}`.
    let response = h.http.post(h.url("/v1/items")).send().await.unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(request_of(&reply), json!({}));

    // PATCH: nested path variable, body field, a FieldMask from the query.
    let response = h
        .http
        .patch(h.url("/v1/items/p-7?update_mask=title,sizeBytes"))
        .json(&json!({"title": "new", "sizeBytes": 3}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["method"], "UpdateItem");
    assert_eq!(
        request_of(&reply),
        json!({"item": {"id": "p-7", "title": "new", "sizeBytes": "3"}, "updateMask": "title,sizeBytes"})
    );

    // DELETE.
    let response = h.http.delete(h.url("/v1/items/d1")).send().await.unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(reply["method"], "DeleteItem");
    assert_eq!(request_of(&reply), json!({"id": "d1"}));

    // A custom `:verb` method.
    let response = h
        .http
        .post(h.url("/v1/items/a1:archive"))
        .json(&json!({"reason": "old"}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["method"], "ArchiveItem");
    assert_eq!(request_of(&reply), json!({"id": "a1", "reason": "old"}));

    // `**` takes the rest of the path.
    let response = h
        .http
        .get(h.url("/v1/files/a/b/c.txt"))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(request_of(&reply), json!({"path": "a/b/c.txt"}));

    // response_body: only the item comes back.
    let response = h.http.get(h.url("/v1/items/r1/item")).send().await.unwrap();
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(reply, json!({"id": "r1", "sizeBytes": "9007199254740993"}));

    // The admin port counts requests by route template, never raw path.
    let metrics = h
        .http
        .get(format!("http://{}/metrics", h.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gateway_request_total"), "{metrics}");
    assert!(
        metrics.contains(r#"route="/v1/items/{id}""#) && metrics.contains(r#"method="GET""#),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_response_total"), "{metrics}");
    assert!(
        metrics.contains("gateway_response_latency_seconds"),
        "{metrics}"
    );
    assert!(!metrics.contains("it%2F1"), "{metrics}");

    h.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error() {
    let h = Harness::start(false).await;

    async fn expect(response: reqwest::Response, status: u16, code: i64, needle: &str) {
        let (actual, request_id, body) = parts(response).await;
        assert_eq!(actual, status, "{body}");
        assert!(request_id.is_some());
        assert_eq!(body["code"], code, "{body}");
        assert!(body["details"].is_array(), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "`{needle}` not in `{message}`");
    }
    let post = |path: &str, body: &'static str| {
        h.http
            .post(h.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Malformed JSON names the line and column.
    expect(
        post("/v1/items", "{\"note\": ").await.unwrap(),
        400,
        3,
        "line 1",
    )
    .await;
    // Unknown field.
    expect(
        post("/v1/items", r#"{"bogus": 1}"#).await.unwrap(),
        400,
        3,
        "bogus",
    )
    .await;
    // Wrong type.
    expect(
        post("/v1/items", r#"{"item": {"sizeBytes": true}}"#)
            .await
            .unwrap(),
        400,
        3,
        "invalid",
    )
    .await;
    // Bad enum name in a query parameter.
    let response = h
        .http
        .get(h.url("/v1/items/x?kind=KIND_HUGE"))
        .send()
        .await
        .unwrap();
    expect(response, 400, 3, "kind").await;
    // Unknown query parameter.
    let response = h
        .http
        .get(h.url("/v1/items/x?colour=red"))
        .send()
        .await
        .unwrap();
    expect(response, 400, 3, "colour").await;
    // Wrong type in a query parameter.
    let response = h
        .http
        .get(h.url("/v1/items/x?page_size=ten"))
        .send()
        .await
        .unwrap();
    expect(response, 400, 3, "page_size").await;
    // Oversized body, announced by Content-Length.
    let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(70 * 1024));
    let response = h
        .http
        .post(h.url("/v1/items"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    expect(response, 413, 3, "larger than").await;
    // Oversized body, chunked without a length: cut off while reading.
    let status_line = chunked_post(&h.base, "/v1/items", big.as_bytes()).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    // Wrong content type.
    let response = h
        .http
        .post(h.url("/v1/items"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect(response, 415, 3, "text/plain").await;
    // No route.
    let response = h.http.get(h.url("/v2/nothing")).send().await.unwrap();
    expect(response, 404, 5, "/v2/nothing").await;
    // Wrong method: 405 with Allow.
    let response = h.http.put(h.url("/v1/items/x")).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(
        allow.contains("GET") && allow.contains("PATCH") && allow.contains("DELETE"),
        "{allow}"
    );
    expect(response, 405, 12, "PUT").await;

    // Rejections are counted under one label, not per raw path.
    let metrics = h
        .http
        .get(format!("http://{}/metrics", h.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"route="unmatched""#), "{metrics}");
    assert!(!metrics.contains("/v2/nothing"), "{metrics}");

    h.stop().await;
}

#[tokio::test]
async fn upstream_errors_keep_their_code_and_details() {
    let h = Harness::start(false).await;
    let response = h
        .http
        .post(h.url("/v1/items:fail"))
        .json(&json!({"item": {"title": ""}}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 3);
    assert_eq!(body["message"], "invalid item");
    let details = body["details"].as_array().unwrap();
    let bad_request = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        bad_request["fieldViolations"],
        json!([{"field": "item.title", "description": "must not be empty"}])
    );
    let info = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(info["reason"], "EMPTY_TITLE");
    h.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_503() {
    let h = Harness::start(true).await;
    let response = h.http.get(h.url("/v1/items/x")).send().await.unwrap();
    let (status, request_id, body) = parts(response).await;
    assert_eq!(status, 503, "{body}");
    assert!(request_id.is_some());
    assert_eq!(body["code"], 14);
    // The transport's own error text stays in the log.
    assert!(!body["message"].as_str().unwrap().contains("tcp"), "{body}");
    h.stop().await;
}
