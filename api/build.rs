//! Generates the prost messages, tonic services and pbjson serde impls from `proto/`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("skiff_descriptor.bin");
    let protos = [
        "proto/skiff/v1/meta.proto",
        "proto/skiff/v1/core.proto",
        "proto/skiff/v1/apps.proto",
        "proto/skiff/v1/coordination.proto",
        "proto/skiff/v1/networking.proto",
        "proto/skiff/v1/autoscaling.proto",
        "proto/skiff/v1/rbac.proto",
        "proto/skiff/v1/policy.proto",
        "proto/skiff/v1/api.proto",
        "proto/skiff/v1/node.proto",
        "proto/skiff/v1/keyvalue.proto",
    ];
    let well_known = protoc_bin_vendored::include_path()?;
    let includes = [PathBuf::from("proto"), well_known];

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .extern_path(".skiff.v1.IntOrString", "crate::IntOrString")
        .btree_map(".")
        // Secret's Debug is written by hand (src/redact.rs): values never reach a log.
        .skip_debug([".skiff.v1.Secret"])
        .compile_with_config(config, &protos.map(PathBuf::from), &includes)?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .btree_map(["."])
        .exclude([".skiff.v1.IntOrString"])
        .extern_path(".skiff.v1.IntOrString", "crate::IntOrString")
        .build(&[".skiff"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
