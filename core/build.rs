//! Protobuf code generation. The messages are always generated (the edge encodes them for
//! gRPC-Web); the tonic server and client only with the `warehouse` feature, which also writes the
//! file descriptor set that server reflection serves. protoc comes from `protoc-bin-vendored`, so a
//! fresh clone needs no system protoc.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { env::set_var("PROTOC", protoc) };

    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = ["common.proto", "warehouse.proto", "flashsale.proto"].map(|f| proto_dir.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let services = env::var_os("CARGO_FEATURE_WAREHOUSE").is_some();
    let mut config = tonic_prost_build::configure()
        .build_server(services)
        .build_client(services)
        .build_transport(services);
    if services {
        let out = PathBuf::from(env::var("OUT_DIR")?);
        config = config.file_descriptor_set_path(out.join("flashgate_descriptor.bin"));
    }
    config.compile_protos(&files, &[proto_dir, include])?;
    Ok(())
}
