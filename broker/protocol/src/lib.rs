//! Kafka wire protocol for Chronik: length-prefixed framing, request header and body decoding,
//! response encoding, and the ApiVersions answer built from the broker's list of supported APIs.
//!
//! The message types themselves come from the kafka-protocol crate; this crate owns the rules
//! around them (which header version goes with which API version, how big a frame may be, what
//! to answer a client that asks for a version we do not speak) and does no I/O, so it can be
//! fuzzed and tested on bytes alone.

mod api_versions;
mod error;
mod frame;
mod request;
mod response;

pub use api_versions::{api_versions_response, SupportedApi};
pub use error::ProtocolError;
pub use frame::{frame_length, FRAME_LENGTH_BYTES};
pub use request::{decode_request, peek_request_header, DecodedRequest, RequestPrefix};
pub use response::encode_response;

pub use kafka_protocol;
