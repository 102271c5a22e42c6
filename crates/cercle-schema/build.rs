//! Compiles `proto/cercle/v1/operation.proto` with protox (pure Rust, no `protoc`) and
//! generates its messages with prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = proto_root.join("cercle/v1/operation.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&proto_root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
