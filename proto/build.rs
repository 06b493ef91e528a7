//! Compiles the contracts with protox (no system `protoc`) and writes the
//! encoded descriptor set next to the generated code.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let files = [
        "cloudsec/api/v1/options.proto",
        "cloudsec/audit/v1/audit.proto",
        "cloudsec/auth/v1/auth.proto",
        "cloudsec/documents/v1/documents.proto",
        "cloudsec/events/v1/events.proto",
    ];
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files)?;

    // Encoded by protox itself: re-encoding the prost_types set would drop
    // the `google.api.http` extension options the gateway reads.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("cloudsec_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;

    println!("cargo:rerun-if-changed=cloudsec");
    println!("cargo:rerun-if-changed=google");
    Ok(())
}
