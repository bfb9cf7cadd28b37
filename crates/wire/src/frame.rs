//! Request framing: a 4-byte big-endian size, then that many bytes.
use crate::Error;

/// Checks a size prefix against the frame limit and returns the body length in bytes.
pub fn body_bytes(prefix: [u8; 4], frame_bytes_max: u32) -> Result<usize, Error> {
    let value = i32::from_be_bytes(prefix);
    if value <= 0 {
        return Err(Error::FrameSizeInvalid { value });
    }
    let value = value as u32;
    if value > frame_bytes_max {
        return Err(Error::FrameTooLarge { limit: frame_bytes_max, value });
    }
    Ok(value as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_negative_and_oversized_frames() {
        assert!(matches!(
            body_bytes((-1i32).to_be_bytes(), 100),
            Err(Error::FrameSizeInvalid { .. })
        ));
        assert!(matches!(body_bytes(101i32.to_be_bytes(), 100), Err(Error::FrameTooLarge { .. })));
        assert_eq!(body_bytes(100i32.to_be_bytes(), 100).unwrap(), 100);
    }
}
