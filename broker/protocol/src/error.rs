use kafka_protocol::messages::ApiKey;
use thiserror::Error;

/// Why bytes from a client could not be turned into a request.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("frame of {size} bytes exceeds the maximum request size {max}")]
    FrameTooLarge { size: usize, max: usize },
    #[error("negative frame length {0}")]
    NegativeFrameLength(i32),
    #[error("frame of {0} bytes is too short for a request header")]
    FrameTooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}
