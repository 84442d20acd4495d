//! Compiles `proto/etcd_kv.proto` (the slice of etcd's KV service the store benchmark drives) with
//! protox into a tonic client, so the benchmark can run the same workload against etcd.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/etcd_kv.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(protox::compile(files, ["proto"])?)?;
    Ok(())
}
