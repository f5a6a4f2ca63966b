//! Request decoding. The header's own version depends on the API and its version, so the fixed
//! prefix (api key, api version, correlation id) is read first and the rest decoded after.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::ProtocolError;

/// The fixed first eight bytes of every request, readable before anything else is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

pub fn peek_request_header(frame: &[u8]) -> Result<RequestPrefix, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::FrameTooShort(frame.len()));
    }
    Ok(RequestPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// A fully decoded request.
#[derive(Debug)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decode a frame (without its length prefix). Versions outside what the kafka-protocol crate
/// can parse are refused here; which versions the broker serves is the caller's decision.
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, ProtocolError> {
    let prefix = peek_request_header(&frame)?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|()| ProtocolError::UnknownApiKey(prefix.api_key))?;
    let version = prefix.api_version;
    let range = api_key.valid_versions();
    if !(range.min..=range.max).contains(&version) {
        return Err(ProtocolError::UnsupportedVersion {
            api: api_key,
            version,
        });
    }
    let malformed = |e: anyhow::Error| ProtocolError::Malformed {
        api: api_key,
        version,
        reason: e.to_string(),
    };
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(malformed)?;
    Ok(DecodedRequest {
        api_key,
        version,
        header,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_flexible_and_legacy_headers() {
        for version in [0, 3] {
            let frame = encode(ApiKey::ApiVersions, version, &ApiVersionsRequest::default());
            let req = decode_request(frame).unwrap();
            assert_eq!(req.api_key, ApiKey::ApiVersions);
            assert_eq!(req.header.correlation_id, 42);
            assert_eq!(req.header.client_id.as_deref(), Some("test"));
        }
        let frame = encode(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(matches!(
            decode_request(frame).unwrap().body,
            RequestKind::Metadata(_)
        ));
    }

    #[test]
    fn unknown_key_and_version_are_refused() {
        let mut frame = encode(ApiKey::Metadata, 1, &MetadataRequest::default()).to_vec();
        frame[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode_request(frame.into()),
            Err(ProtocolError::UnknownApiKey(999))
        ));
        let mut frame = encode(ApiKey::Metadata, 1, &MetadataRequest::default()).to_vec();
        frame[2..4].copy_from_slice(&300i16.to_be_bytes());
        assert!(matches!(
            decode_request(frame.into()),
            Err(ProtocolError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn huge_array_count_is_malformed_not_an_abort() {
        // Metadata v1 whose topic array claims 0x7fffffff entries in a 14-byte frame: the
        // unpatched codec reserved 154 GB for it and the process aborted.
        let frame = Bytes::from_static(&[
            0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff,
        ]);
        assert!(matches!(
            decode_request(frame),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn truncated_body_is_malformed_not_a_panic() {
        let frame = encode(ApiKey::Metadata, 12, &MetadataRequest::default());
        for cut in 8..frame.len() {
            let _ = decode_request(frame.slice(..cut));
        }
    }
}
