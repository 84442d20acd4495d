//! Compiles the `.proto` files with protox (pure Rust, no system protoc) into tonic/prost code,
//! and writes the file descriptor set that server reflection serves.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/rkube/store/v1/store.proto",
        "proto/rkube/api/v1/api.proto",
        "proto/rkube/api/v1/node_proxy.proto",
        "proto/rkube/agent/v1/agent.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Store commands travel through the Raft log in a serde encoding.
        .type_attribute(
            ".rkube.store.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
