//! Length-prefixed framing: every Kafka request and response is an int32 size then that many
//! bytes. The size is checked against the limit before anything is allocated for the body.

use crate::ProtocolError;

pub const FRAME_LENGTH_BYTES: usize = 4;

/// Parse and bound-check a frame's length prefix.
pub fn frame_length(prefix: [u8; 4], max: usize) -> Result<usize, ProtocolError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 {
        return Err(ProtocolError::NegativeFrameLength(size));
    }
    let size = size as usize;
    if size > max {
        return Err(ProtocolError::FrameTooLarge { size, max });
    }
    // api key + api version + correlation id is the smallest possible request
    if size < 8 {
        return Err(ProtocolError::FrameTooShort(size));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sizes_within_limit() {
        assert_eq!(frame_length(100i32.to_be_bytes(), 1000).unwrap(), 100);
    }

    #[test]
    fn refuses_oversized_before_allocation() {
        let err = frame_length(i32::MAX.to_be_bytes(), 100 << 20).unwrap_err();
        assert!(matches!(err, ProtocolError::FrameTooLarge { .. }), "{err}");
    }

    #[test]
    fn refuses_negative_and_tiny_frames() {
        assert!(matches!(
            frame_length((-1i32).to_be_bytes(), 1000),
            Err(ProtocolError::NegativeFrameLength(-1))
        ));
        assert!(matches!(
            frame_length(3i32.to_be_bytes(), 1000),
            Err(ProtocolError::FrameTooShort(3))
        ));
    }
}
