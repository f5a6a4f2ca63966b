//! Response encoding into a complete frame (length prefix included) ready to write.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::ProtocolError;

pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let encode_err = |e: anyhow::Error| ProtocolError::Encode {
        api: api_key,
        version,
        reason: e.to_string(),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(encode_err)?;
    body.encode(&mut buf, version).map_err(encode_err)?;
    let size = (buf.len() - crate::FRAME_LENGTH_BYTES) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}
