//! Compiles proto/raft.proto with a vendored protoc, so no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/raft.proto");
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // Replicated batches pass through as the leader's stored bytes, without a copy.
        .bytes([".chronik.raft.v1.PartitionData.records"])
        // Encodes each message into a buffer reserved at its full size: fetch answers are
        // megabytes, and growing tonic's buffer step by step copied them over and over.
        .codec_path("crate::sized_codec::SizedProstCodec")
        .compile_protos(&["proto/raft.proto"], &["proto"])?;
    Ok(())
}
