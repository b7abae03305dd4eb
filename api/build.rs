//! Compiles `proto/runtime/v1/api.proto` with the pure-Rust `protox` compiler (no
//! protoc needed) and generates the tonic client and server code from the resulting
//! descriptor set. The descriptor set is also written to
//! `$OUT_DIR/runtime.v1.fds.bin` so that the library can embed it
//! (`crid_api::FILE_DESCRIPTOR_SET`) for gRPC reflection and the wire tests.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

const PROTO_ROOT: &str = "proto";
const PROTO_FILE: &str = "proto/runtime/v1/api.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_FILE}");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    // With source info, our proto comments become doc comments on the generated code.
    let fds = protox::Compiler::new([PROTO_ROOT])?
        .include_source_info(true)
        .include_imports(true)
        .open_file(PROTO_FILE)?
        .file_descriptor_set();

    // The embedded copy needs no source locations; leaving them out keeps it small.
    let mut embedded = fds.clone();
    for file in &mut embedded.file {
        file.source_code_info = None;
    }
    fs::write(out_dir.join("runtime.v1.fds.bin"), embedded.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    Ok(())
}
