//! Compiles `proto/` with protox (pure Rust, no `protoc`) and feeds tonic-prost-build.
//! Code is generated for the service (`ledger.proto`); the signed bodies
//! (`operation.proto`) are `cercle-schema`'s. Reflection describes both.

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
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
