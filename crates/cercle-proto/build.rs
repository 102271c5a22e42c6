//! Compiles `proto/` with protox (pure Rust, no `protoc`) and feeds tonic-prost-build.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = proto_root.join("cercle/v1/ledger.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let fds = protox::compile([&file], [&proto_root])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("cercle_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
