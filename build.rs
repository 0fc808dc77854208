//! Compiles the public protobuf contract with a pure-Rust compiler (protox), so no system
//! `protoc` is needed, and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/workflowdb/v1/catalog.proto",
        "proto/workflowdb/v1/admin.proto",
        "proto/workflowdb/v1/graph.proto",
        "proto/workflowdb/v1/registry.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("workflowdb_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
