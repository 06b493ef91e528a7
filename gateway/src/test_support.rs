//! What the unit tests share: the test-only echo contract and small inline
//! contracts (compiled with protox like the platform's own), and header
//! maps from literal pairs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use prost_reflect::DescriptorPool;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

/// `tests/proto/cloudsec/echo/v1/echo.proto` and its imports.
pub(crate) fn echo_pool() -> DescriptorPool {
    let mut compiler =
        protox::Compiler::new([root().join("tests/proto"), root().join("../proto")]).unwrap();
    compiler.include_imports(true);
    compiler
        .open_files(["cloudsec/echo/v1/echo.proto"])
        .unwrap();
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap()
}

struct Inline(&'static str);

impl protox::file::FileResolver for Inline {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == "inline.proto" {
            protox::file::File::from_source(name, self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// `source` compiled as `inline.proto`, which may import the platform's
/// protos (`cloudsec/api/v1/options.proto`, `google/api/...`).
pub(crate) fn compile(source: &'static str) -> DescriptorPool {
    let mut chain = protox::file::ChainFileResolver::new();
    chain.add(Inline(source));
    chain.add(protox::file::IncludeFileResolver::new(
        root().join("../proto"),
    ));
    chain.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    compiler.open_file("inline.proto").unwrap();
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap()
}

/// A header map of literal `(name, value)` pairs.
pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_static(k),
                http::HeaderValue::from_static(v),
            )
        })
        .collect()
}
