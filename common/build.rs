//! Compiles `proto/` with protox (pure-Rust protoc) into prost + tonic code, pbjson serde impls for
//! the configuration types, and a file descriptor set for gRPC reflection.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("..").join("proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let files = [
        "serval/discovery/v1/discovery.proto",
        "serval/config/v1/address.proto",
        "serval/config/v1/listener.proto",
        "serval/config/v1/route.proto",
        "serval/config/v1/cluster.proto",
        "serval/config/v1/endpoint.proto",
        "serval/config/v1/secret.proto",
        "serval/admin/v1/admin.proto",
    ];
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut compiler = protox::Compiler::new([&proto_root])?;
    // include_imports: well-known types go into the descriptor set, so reflection can describe them.
    compiler.include_imports(true).include_source_info(true);
    for file in files {
        compiler.open_file(proto_root.join(file))?;
    }
    let descriptor_bytes = compiler.encode_file_descriptor_set();
    fs::write(out_dir.join("serval_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Map fields encode in key order: a resource's version is the hash of its bytes.
        .btree_map(".")
        .compile_fds_with_config(compiler.file_descriptor_set(), {
            // Well-known types from pbjson-types: the same messages as prost-types, plus serde.
            let mut config = tonic_prost_build::Config::new();
            config.prost_types_path("::pbjson_types");
            config
        })?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .btree_map(["."])
        .build(&[".serval.config", ".serval.admin", ".serval.discovery"])?;
    Ok(())
}
