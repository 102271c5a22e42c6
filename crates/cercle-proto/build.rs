//! Compiles `proto/` with protox (pure Rust, no `protoc`) and feeds tonic-prost-build.
//! Code is generated for the service (`ledger.proto`); the signed bodies
//! (`operation.proto`) are `cercle-schema`'s. Reflection describes both.
//!
//! Two passes: the messages and the server with `codec::RequestCodec` (a request that does
//! not decode is the caller's error, INVALID_ARGUMENT), then the client alone, into
//! `client/`, with prost's own codec (a response that does not decode is the node's
//! error, INTERNAL) and the messages of the first pass.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let ledger = proto_root.join("cercle/v1/ledger.proto");
    let operation = proto_root.join("cercle/v1/operation.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let both = protox::compile([&ledger, &operation], [&proto_root])?;
    std::fs::write(out_dir.join("cercle_descriptor.bin"), both.encode_to_vec())?;
    let fds = protox::compile([&ledger], [&proto_root])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::codec::RequestCodec")
        .compile_fds(fds.clone())?;
    let client_dir = out_dir.join("client");
    std::fs::create_dir_all(&client_dir)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(".cercle.v1", "crate")
        .out_dir(&client_dir)
        .compile_fds(fds)?;
    Ok(())
}
