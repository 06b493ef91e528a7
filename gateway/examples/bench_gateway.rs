//! The processes of the gateway benchmark (`scripts/bench-gateway`), over
//! the contract in `examples/bench/bench.proto`:
//!
//! - `files DIR`: the descriptor set (for Envoy's transcoder), the request
//!   as JSON and as a gRPC frame;
//! - `backend PORT`: a plaintext gRPC server that echoes `Echo` requests,
//!   the one backend behind every path;
//! - `gateway PORT ADMIN_PORT BACKEND_PORT`: our gateway in front of it;
//! - `transcode SECONDS`: JSON to protobuf through the gateway's own
//!   transcoder and validator on this thread, printed as MB/s of JSON;
//! - `transcode-count N [reference]`: N transcodings and nothing else
//!   (the streaming transcoder, or the reference one), for callgrind;
//! - `render-count N [reference]`: the same for the reply direction
//!   (protobuf to JSON: the streaming renderer, or the reference one).
//!
//! Built with `--features fuzzing`, which exposes the transcoder.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cloudsec_gateway::fuzzing::Transcoder;
use cloudsec_gateway::{DynamicCodec, Gateway, GatewayConfig, Upstream};
use cloudsec_identity::{Issuer, LocalCa, SpiffeId};
use cloudsec_runtime::shutdown::{self, Shutdown};
use cloudsec_runtime::telemetry::{self, LogFormat};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::server::NamedService;

const SERVICE: &str = "cloudsec.bench.v1.GatewayBench";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn descriptor_set() -> Result<Vec<u8>, Error> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiler = protox::Compiler::new([root.join("examples/bench"), root.join("../proto")])?;
    compiler.include_imports(true);
    compiler.open_files(["bench.proto"])?;
    Ok(compiler.encode_file_descriptor_set())
}

/// The request every path sends: about 1 KiB of JSON, with no default
/// values, so that the echo renders every field again.
fn request_json() -> String {
    let parts: Vec<serde_json::Value> = (1..=6)
        .map(|i| {
            serde_json::json!({"name": format!("part-{i}"), "index": i, "weight": 0.25 * f64::from(i), "visible": true})
        })
        .collect();
    serde_json::json!({
        "id": "0192f0c4-6a8e-7d3c-9b1a-5f2e8c7d4a10",
        "title": "Quarterly access review: production accounts",
        "sizeBytes": "9007199254740993",
        "tags": ["security", "review", "q3", "production", "aws"],
        "labels": {"team": "platform", "env": "prod", "owner": "ann", "tier": "gold"},
        "kind": "KIND_DOCUMENT",
        "createTime": "2025-06-30T12:34:56.789Z",
        "parts": parts,
        "content": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident.",
    })
    .to_string()
}

fn files(dir: &Path) -> Result<(), Error> {
    let set = descriptor_set()?;
    std::fs::write(dir.join("descriptors.pb"), &set)?;
    let json = request_json();
    std::fs::write(dir.join("request.json"), &json)?;
    let pool = DescriptorPool::decode(set.as_slice())?;
    let record = pool
        .get_message_by_name("cloudsec.bench.v1.Record")
        .ok_or("no Record")?;
    let mut de = serde_json::Deserializer::from_str(&json);
    let message = DynamicMessage::deserialize(record, &mut de)?;
    let bytes = message.encode_to_vec();
    // The gRPC frame: uncompressed, 4-byte big-endian length, message.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(bytes.len())?.to_be_bytes());
    frame.extend_from_slice(&bytes);
    std::fs::write(dir.join("request.grpc"), frame)?;
    Ok(())
}

/// Answers `Echo` with its request.
#[derive(Clone)]
struct Backend {
    pool: DescriptorPool,
}

impl NamedService for Backend {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Backend {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = self
            .pool
            .get_service_by_name(SERVICE)
            .and_then(|s| s.methods().find(|m| m.name() == "Echo"));
        Box::pin(async move {
            let Some(method) = method else {
                return Ok(tonic::Status::unimplemented("no Echo").into_http());
            };
            let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(method.input()));
            let echo = tower::service_fn(|request: tonic::Request<DynamicMessage>| async move {
                Ok::<_, tonic::Status>(tonic::Response::new(request.into_inner()))
            });
            Ok(grpc.unary(echo, req).await)
        })
    }
}

async fn backend(port: u16) -> Result<(), Error> {
    let pool = DescriptorPool::decode(descriptor_set()?.as_slice())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tonic::transport::Server::builder()
        .add_routes(tonic::service::Routes::new(Backend { pool }))
        .serve(addr)
        .await?;
    Ok(())
}

async fn gateway(port: u16, admin: u16, backend: u16) -> Result<(), Error> {
    // The subscriber `cloudsec serve gateway` installs (JSON, `RUST_LOG`).
    // Without one, every span of hyper and h2 is offered to the `log`
    // crate instead: about 23,000 instructions per request (callgrind)
    // that no deployed gateway spends.
    let _telemetry = telemetry::init("cloudsec-gateway", LogFormat::Json, None);
    let mut config = GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], admin)),
        request_timeout: Duration::from_secs(10),
        ..GatewayConfig::default()
    };
    config.upstreams.insert(
        SERVICE.to_owned(),
        Upstream {
            uri: format!("http://127.0.0.1:{backend}"),
            server_name: "bench.default.svc".to_owned(),
        },
    );
    // Plaintext on loopback, as behind a sidecar: the certificate is
    // required by the API and never used.
    let ca = LocalCa::generate()?;
    let id = SpiffeId::new("cloudsec.local", "default", "gateway")?;
    let mesh = ca.issue(&id, Duration::from_secs(3600)).await?.mesh_tls();
    let set = descriptor_set()?;
    let gateway = Gateway::build(&config, &[set.as_slice()], mesh).await?;
    let stop = Shutdown::new();
    shutdown::cancel_on_signal(stop.clone());
    gateway.run_until_stopped(stop).await?;
    Ok(())
}

fn transcode(seconds: u64) -> Result<(), Error> {
    let set = descriptor_set()?;
    let transcoder = Transcoder::new(&[set.as_slice()])?;
    let json = request_json();
    // The gateway's path (the streaming transcoder where the route has
    // one), then the reference transcoder on the same request.
    let timed = |f: &dyn Fn() -> Result<usize, String>| -> Result<(u64, usize, f64), Error> {
        let budget = Duration::from_secs(seconds);
        let started = Instant::now();
        let (mut requests, mut protobuf) = (0u64, 0usize);
        while started.elapsed() < budget {
            for _ in 0..1000 {
                protobuf = f()?;
                requests += 1;
            }
        }
        Ok((requests, protobuf, started.elapsed().as_secs_f64()))
    };
    let (requests, protobuf, elapsed) =
        timed(&|| transcoder.to_protobuf(0, json.as_bytes()).map(|b| b.len()))?;
    let (ref_requests, _, ref_elapsed) = timed(&|| {
        transcoder
            .to_protobuf_reference(0, json.as_bytes())
            .map(|b| b.len())
    })?;
    // The reply direction: the echo's reply is the request's bytes.
    let reply = transcoder.to_protobuf(0, json.as_bytes())?;
    let rendered = |f: &dyn Fn() -> Result<Vec<u8>, String>| timed(&|| f().map(|json| json.len()));
    let (out_requests, out_json, out_elapsed) = rendered(&|| transcoder.to_json(0, &reply))?;
    let (out_ref_requests, _, out_ref_elapsed) =
        rendered(&|| transcoder.to_json_reference(0, &reply))?;
    let mb = |n: u64, s: f64| n as f64 * json.len() as f64 / s / 1e6;
    let out_mb = |n: u64, s: f64| n as f64 * out_json as f64 / s / 1e6;
    println!(
        "render: json_bytes={out_json} mb_per_s={:.1} per_reply_us={:.2} reference_mb_per_s={:.1} reference_per_reply_us={:.2}",
        out_mb(out_requests, out_elapsed),
        out_elapsed * 1e6 / out_requests as f64,
        out_mb(out_ref_requests, out_ref_elapsed),
        out_ref_elapsed * 1e6 / out_ref_requests as f64,
    );
    println!(
        "json_bytes={} protobuf_bytes={} requests={} seconds={:.3} mb_per_s={:.1} per_request_us={:.2} streaming={} reference_mb_per_s={:.1} reference_per_request_us={:.2}",
        json.len(),
        protobuf,
        requests,
        elapsed,
        mb(requests, elapsed),
        elapsed * 1e6 / requests as f64,
        transcoder.streams(0),
        mb(ref_requests, ref_elapsed),
        ref_elapsed * 1e6 / ref_requests as f64,
    );
    Ok(())
}

/// `n` transcodings of the benchmark request and nothing else, for
/// callgrind (`scripts/callgrind-gateway`): instructions per request are
/// the difference of two counts over the difference of their `n`.
fn transcode_count(n: u64, reference: bool) -> Result<(), Error> {
    let set = descriptor_set()?;
    let transcoder = Transcoder::new(&[set.as_slice()])?;
    let json = request_json();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += if reference {
            transcoder.to_protobuf_reference(0, json.as_bytes())?.len()
        } else {
            transcoder.to_protobuf(0, json.as_bytes())?.len()
        };
    }
    println!("transcoded={n} protobuf_bytes={bytes}");
    Ok(())
}

/// `n` renderings of the benchmark reply and nothing else, for callgrind.
fn render_count(n: u64, reference: bool) -> Result<(), Error> {
    let set = descriptor_set()?;
    let transcoder = Transcoder::new(&[set.as_slice()])?;
    let reply = transcoder.to_protobuf(0, request_json().as_bytes())?;
    let mut bytes = 0;
    for _ in 0..n {
        bytes += if reference {
            transcoder.to_json_reference(0, &reply)?.len()
        } else {
            transcoder.to_json(0, &reply)?.len()
        };
    }
    println!("rendered={n} json_bytes={bytes}");
    Ok(())
}

fn port(arg: Option<&String>) -> Result<u16, Error> {
    Ok(arg.ok_or("missing port")?.parse()?)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match args.get(1).map(String::as_str) {
        Some("files") => files(Path::new(args.get(2).ok_or("missing DIR")?)),
        Some("backend") => runtime()?.block_on(backend(port(args.get(2))?)),
        Some("gateway") => runtime()?.block_on(gateway(
            port(args.get(2))?,
            port(args.get(3))?,
            port(args.get(4))?,
        )),
        Some("transcode") => transcode(args.get(2).map_or(Ok(3), |s| s.parse())?),
        Some("transcode-count") => transcode_count(
            args.get(2).map_or(Ok(1000), |s| s.parse())?,
            args.get(3).map(String::as_str) == Some("reference"),
        ),
        Some("render-count") => render_count(
            args.get(2).map_or(Ok(1000), |s| s.parse())?,
            args.get(3).map(String::as_str) == Some("reference"),
        ),
        _ => Err("usage: bench_gateway files DIR | backend PORT | gateway PORT ADMIN_PORT BACKEND_PORT | transcode SECONDS | transcode-count N [reference] | render-count N [reference]".into()),
    }
}
