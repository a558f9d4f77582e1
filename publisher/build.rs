//! Compiles `proto/hookline/v1/event_broker.proto` with protox (pure Rust: no `protoc` needed)
//! into the tonic service and messages, and writes the encoded file descriptor set that the
//! server reflection service serves.

use std::path::PathBuf;

const PROTO: &str = "hookline/v1/event_broker.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true).open_file(PROTO)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("event_broker_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
