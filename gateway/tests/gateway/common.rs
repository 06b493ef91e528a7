//! The test harness shared by the gateway's integration tests: a generic
//! echo server for the test contract (plus a minimal auth service for
//! JWKS), a gateway in front of it, and response helpers.

// Each test binary uses a different part of the harness, and `pub` here
// means "for the test files", which the crate-level lint cannot see.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cloudsec_gateway::{Clock, DynamicCodec, Gateway, GatewayConfig, GatewayError, Upstream};
use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use cloudsec_proto::auth::v1 as pb_auth;
use cloudsec_proto::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use cloudsec_proto::auth::v1::{
    GetJwksRequest, Jwks, LoginRequest, LoginResponse, SignUpRequest, SignUpResponse,
};
use cloudsec_runtime::shutdown::Shutdown;
use cloudsec_runtime::tls::MeshTls;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;

pub const ECHO_SERVICE: &str = "cloudsec.echo.v1.EchoService";
/// 2^53 + 1: a JSON number would lose the last digit.
pub const BIG: i64 = 9_007_199_254_740_993;
pub const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The echo contract, compiled with protox like the platform's own.
pub fn echo_descriptor_set() -> Vec<u8> {
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
            if method.is_server_streaming() {
                let handler = tower::service_fn(move |request| watch(method.clone(), request));
                return Ok(grpc.server_streaming(handler, req).await);
            }
            let handler = tower::service_fn(move |request| echo(method.clone(), request));
            Ok(grpc.unary(handler, req).await)
        })
    }
}

type ItemStream =
    Pin<Box<dyn futures::Stream<Item = Result<DynamicMessage, tonic::Status>> + Send>>;

/// `WatchItems`: `count` items (`i0`, `i1`, ...), a pause of `pause_ms`
/// after the first, then OK, or FAILED_PRECONDITION with `fail`; NOT_FOUND
/// before anything with `missing`.
async fn watch(
    method: MethodDescriptor,
    request: tonic::Request<DynamicMessage>,
) -> Result<tonic::Response<ItemStream>, tonic::Status> {
    let input = request.into_inner();
    let int = |name: &str| {
        input
            .get_field_by_name(name)
            .and_then(|v| v.as_i32())
            .unwrap_or(0)
    };
    let flag = |name: &str| {
        input
            .get_field_by_name(name)
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };
    if flag("missing") {
        return Err(tonic::Status::not_found("nothing to watch"));
    }
    let (count, fail) = (int("count"), flag("fail"));
    let pause = Duration::from_millis(u64::try_from(int("pause_ms")).unwrap_or(0));
    let output = method.output();
    let items = futures::stream::unfold(0, move |i| {
        let output = output.clone();
        async move {
            if i == count && fail {
                let status = tonic::Status::failed_precondition("watch broken");
                return Some((Err(status), i + 1));
            }
            if i >= count {
                return None;
            }
            if i == 1 {
                tokio::time::sleep(pause).await;
            }
            let mut item = DynamicMessage::new(output);
            item.set_field_by_name("id", Value::String(format!("i{i}")));
            item.set_field_by_name("title", Value::String(format!("title {i}")));
            item.set_field_by_name("size_bytes", Value::I64(BIG));
            Some((Ok(item), i + 1))
        }
    });
    Ok(tonic::Response::new(Box::pin(items) as ItemStream))
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
    if request
        .get_ref()
        .get_field_by_name("id")
        .is_some_and(|id| id.as_str() == Some("missing"))
    {
        return Err(tonic::Status::not_found("no such item"));
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
        "tenant-hint",
        "x-cloudsec-client-ip",
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
    let mut response = tonic::Response::new(reply);
    response.metadata_mut().insert(
        "x-served-by",
        tonic::metadata::MetadataValue::from_static("echo"),
    );
    Ok(response)
}

pub async fn mesh_cert(ca: &LocalCa, name: &str) -> (SpiffeId, MeshTls) {
    let id = SpiffeId::new("cloudsec.local", "default", name).unwrap();
    let tls = ca
        .issue(&id, Duration::from_secs(3600))
        .await
        .unwrap()
        .mesh_tls();
    (id, tls)
}

/// A gateway in front of the echo server, both on port 0.
pub struct Harness {
    pub base: String,
    pub admin: SocketAddr,
    pub routes: Vec<String>,
    pub http: reqwest::Client,
    pub shutdown: Shutdown,
    pub gateway: JoinHandle<Result<(), GatewayError>>,
    pub echo: JoinHandle<()>,
    /// The key set the test auth service publishes.
    pub jwks: Arc<Mutex<Jwks>>,
}

/// How to start a harness beyond the defaults.
pub struct Options {
    /// Close the echo server's port before the gateway starts.
    pub upstream_down: bool,
    /// Applied to the gateway's configuration last.
    pub configure: Box<dyn FnOnce(&mut GatewayConfig)>,
    pub clock: Option<Arc<dyn Clock>>,
    /// Also route `cloudsec.auth.v1.AuthService` to the echo server's
    /// minimal auth service.
    pub auth: bool,
    /// The key set the test auth service starts with.
    pub jwks: Jwks,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            upstream_down: false,
            configure: Box::new(|_| {}),
            clock: None,
            auth: false,
            jwks: Jwks::default(),
        }
    }
}

/// Answers GetJwks from a shared key set and SignUp with a fixed reply;
/// enough to stand in for the auth service at the edge.
#[derive(Clone)]
pub struct TestAuth {
    pub jwks: Arc<Mutex<Jwks>>,
}

#[tonic::async_trait]
impl AuthService for TestAuth {
    async fn sign_up(
        &self,
        request: tonic::Request<SignUpRequest>,
    ) -> Result<tonic::Response<SignUpResponse>, tonic::Status> {
        Ok(tonic::Response::new(SignUpResponse {
            user_id: "u-new".into(),
            tenant: request.into_inner().tenant,
        }))
    }

    async fn confirm_sign_up(
        &self,
        _: tonic::Request<pb_auth::ConfirmSignUpRequest>,
    ) -> Result<tonic::Response<pb_auth::ConfirmSignUpResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("confirm_sign_up"))
    }

    async fn resend_confirmation_code(
        &self,
        _: tonic::Request<pb_auth::ResendConfirmationCodeRequest>,
    ) -> Result<tonic::Response<pb_auth::ResendConfirmationCodeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("resend_confirmation_code"))
    }

    async fn forgot_password(
        &self,
        _: tonic::Request<pb_auth::ForgotPasswordRequest>,
    ) -> Result<tonic::Response<pb_auth::ForgotPasswordResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("forgot_password"))
    }

    async fn confirm_forgot_password(
        &self,
        _: tonic::Request<pb_auth::ConfirmForgotPasswordRequest>,
    ) -> Result<tonic::Response<pb_auth::ConfirmForgotPasswordResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("confirm_forgot_password"))
    }

    async fn respond_to_auth_challenge(
        &self,
        _: tonic::Request<pb_auth::RespondToAuthChallengeRequest>,
    ) -> Result<tonic::Response<pb_auth::LoginResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("respond_to_auth_challenge"))
    }

    async fn associate_software_token(
        &self,
        _: tonic::Request<pb_auth::AssociateSoftwareTokenRequest>,
    ) -> Result<tonic::Response<pb_auth::AssociateSoftwareTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("associate_software_token"))
    }

    async fn verify_software_token(
        &self,
        _: tonic::Request<pb_auth::VerifySoftwareTokenRequest>,
    ) -> Result<tonic::Response<pb_auth::VerifySoftwareTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("verify_software_token"))
    }

    async fn set_tenant_mfa_mode(
        &self,
        _: tonic::Request<pb_auth::SetTenantMfaModeRequest>,
    ) -> Result<tonic::Response<pb_auth::SetTenantMfaModeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("set_tenant_mfa_mode"))
    }

    async fn list_groups(
        &self,
        _: tonic::Request<pb_auth::ListGroupsRequest>,
    ) -> Result<tonic::Response<pb_auth::ListGroupsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("list_groups"))
    }

    async fn start_federated_login(
        &self,
        _: tonic::Request<pb_auth::StartFederatedLoginRequest>,
    ) -> Result<tonic::Response<pb_auth::StartFederatedLoginResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("start_federated_login"))
    }

    async fn complete_federated_login(
        &self,
        _: tonic::Request<pb_auth::CompleteFederatedLoginRequest>,
    ) -> Result<tonic::Response<pb_auth::LoginResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("complete_federated_login"))
    }

    async fn login(
        &self,
        _: tonic::Request<LoginRequest>,
    ) -> Result<tonic::Response<LoginResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("login"))
    }

    async fn refresh(
        &self,
        _: tonic::Request<pb_auth::RefreshRequest>,
    ) -> Result<tonic::Response<pb_auth::RefreshResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("refresh"))
    }

    async fn logout(
        &self,
        _: tonic::Request<pb_auth::LogoutRequest>,
    ) -> Result<tonic::Response<pb_auth::LogoutResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("logout"))
    }

    async fn global_sign_out(
        &self,
        _: tonic::Request<pb_auth::GlobalSignOutRequest>,
    ) -> Result<tonic::Response<pb_auth::GlobalSignOutResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("global sign-out"))
    }

    async fn admin_global_sign_out(
        &self,
        _: tonic::Request<pb_auth::AdminGlobalSignOutRequest>,
    ) -> Result<tonic::Response<pb_auth::AdminGlobalSignOutResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("admin global sign-out"))
    }

    async fn delete_software_token(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::DeleteSoftwareTokenRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::DeleteSoftwareTokenResponse>, tonic::Status>
    {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn admin_reset_user_mfa(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::AdminResetUserMfaRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::AdminResetUserMfaResponse>, tonic::Status>
    {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn list_token_revocations(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::ListTokenRevocationsRequest>,
    ) -> Result<
        tonic::Response<cloudsec_proto::auth::v1::ListTokenRevocationsResponse>,
        tonic::Status,
    > {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn get_jwks(
        &self,
        _: tonic::Request<GetJwksRequest>,
    ) -> Result<tonic::Response<Jwks>, tonic::Status> {
        Ok(tonic::Response::new(self.jwks.lock().unwrap().clone()))
    }

    async fn admin_create_user(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::AdminCreateUserRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::AdminCreateUserResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }

    async fn admin_disable_user(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::AdminDisableUserRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::AdminDisableUserResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }

    async fn admin_enable_user(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::AdminEnableUserRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::AdminEnableUserResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }

    async fn admin_delete_user(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::AdminDeleteUserRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::AdminDeleteUserResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }

    async fn change_password(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::ChangePasswordRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::ChangePasswordResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }

    async fn admin_add_user_to_group(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::AdminAddUserToGroupRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::AdminAddUserToGroupResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }

    async fn admin_remove_user_from_group(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::AdminRemoveUserFromGroupRequest>,
    ) -> Result<
        tonic::Response<cloudsec_proto::auth::v1::AdminRemoveUserFromGroupResponse>,
        tonic::Status,
    > {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }

    async fn get_open_id_configuration(
        &self,
        _: tonic::Request<cloudsec_proto::auth::v1::GetOpenIdConfigurationRequest>,
    ) -> Result<tonic::Response<cloudsec_proto::auth::v1::OpenIdConfiguration>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in the test auth"))
    }
}

impl Harness {
    pub async fn start(upstream_down: bool) -> Self {
        Self::with(Options {
            upstream_down,
            ..Options::default()
        })
        .await
    }

    pub async fn with(options: Options) -> Self {
        let upstream_down = options.upstream_down;
        // An OTLP endpoint that nothing serves: spans get real trace ids
        // (so `traceparent` is injected) and are never exported, as the
        // tests end before the first batch.
        // Once per process: a second init replaces the exporter and waits
        // for the old one's flush to time out.
        static TELEMETRY: std::sync::Once = std::sync::Once::new();
        TELEMETRY.call_once(|| {
            std::mem::forget(cloudsec_runtime::telemetry::init(
                "gateway-test",
                cloudsec_runtime::telemetry::LogFormat::Test,
                Some("http://127.0.0.1:9".to_owned()),
            ));
        });
        let descriptors = echo_descriptor_set();
        let ca = LocalCa::generate().unwrap();
        let (echo_id, echo_tls) = mesh_cert(&ca, "echo").await;
        let (_, gateway_tls) = mesh_cert(&ca, "gateway").await;

        let jwks = Arc::new(Mutex::new(options.jwks.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = listener.local_addr().unwrap();
        let echo = if upstream_down {
            // Nothing listens on the address any more.
            drop(listener);
            tokio::spawn(async {})
        } else {
            let pool = DescriptorPool::decode(descriptors.as_slice()).unwrap();
            let routes = tonic::service::Routes::new(EchoServer { pool }).add_service(
                AuthServiceServer::new(TestAuth {
                    jwks: Arc::clone(&jwks),
                }),
            );
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
        if options.auth {
            config.upstreams.insert(
                "cloudsec.auth.v1.AuthService".to_owned(),
                Upstream {
                    uri: format!("https://{echo_addr}"),
                    server_name: echo_id.dns_name(),
                },
            );
        }
        (options.configure)(&mut config);
        let sets = [cloudsec_proto::FILE_DESCRIPTOR_SET, descriptors.as_slice()];
        let gateway = match options.clock {
            Some(clock) => Gateway::build_with_clock(&config, &sets, gateway_tls, clock).await,
            None => Gateway::build(&config, &sets, gateway_tls).await,
        }
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
            jwks,
        }
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(self) {
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
pub async fn parts(response: reqwest::Response) -> (u16, Option<String>, Json) {
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
pub async fn chunked_post(base: &str, path: &str, body: &[u8]) -> String {
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

pub fn request_of(reply: &Json) -> Json {
    serde_json::from_str(reply["requestJson"].as_str().unwrap()).unwrap()
}
