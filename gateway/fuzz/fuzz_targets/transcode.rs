//! The JSON transcoder over the platform's and the echo test contract's
//! routes. The first byte picks a route and the direction:
//!
//! - even: a request from path captures (split by `\x01`), a query string
//!   and a JSON body, separated by `\x00`; an accepted request must render
//!   to JSON that parses back to the same request;
//! - odd: protobuf bytes rendered as the route's response; where the
//!   streaming renderer answers, it must give the reference's JSON.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use cloudsec_gateway::fuzzing::Transcoder;
use libfuzzer_sys::fuzz_target;

fn transcoder() -> &'static Transcoder {
    static TRANSCODER: OnceLock<Transcoder> = OnceLock::new();
    TRANSCODER.get_or_init(|| {
        let gateway = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut compiler =
            protox::Compiler::new([gateway.join("tests/proto"), gateway.join("../proto")])
                .expect("the proto include paths exist");
        compiler.include_imports(true);
        compiler
            .open_files(["cloudsec/echo/v1/echo.proto"])
            .expect("the echo contract compiles");
        let echo = compiler.encode_file_descriptor_set();
        Transcoder::new(&[cloudsec_proto::FILE_DESCRIPTOR_SET, &echo])
            .expect("the contracts make routes")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let transcoder = transcoder();
    let route = usize::from(selector >> 1);
    if selector & 1 == 1 {
        if let Err(failure) = transcoder.response(route, rest) {
            panic!("{failure}");
        }
        return;
    }
    let mut parts = rest.splitn(3, |b| *b == 0);
    let captures = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let captures: Vec<String> = captures.split('\u{1}').map(str::to_owned).collect();
    if let Err(failure) = transcoder.request(route, &captures, &query, body) {
        panic!("{failure}");
    }
});
