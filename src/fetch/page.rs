//! A stats page as it arrives, whatever the transport: its room made once
//! from the length the response says (never past the limit: a header may
//! lie), not grown chunk by chunk, and the size limit checked on each
//! chunk.

use super::error::FetchError;

#[derive(Debug)]
pub struct Page<'a> {
    bytes: Vec<u8>,
    limit: u64,
    /// The endpoint, as errors name it.
    shown: &'a str,
}

impl<'a> Page<'a> {
    pub fn new(said: Option<u64>, limit: u64, shown: &'a str) -> Self {
        Page {
            bytes: Vec::with_capacity(said.unwrap_or(0).min(limit) as usize),
            limit,
            shown,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        if (self.bytes.len() + chunk.len()) as u64 > self.limit {
            return Err(FetchError::TooLarge {
                limit: self.limit,
                endpoint: self.shown.into(),
            });
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// A status other than 2xx, as an error naming the endpoint.
pub fn success(status: hyper::StatusCode, shown: &str) -> Result<(), FetchError> {
    if status.is_success() {
        return Ok(());
    }
    Err(FetchError::Status {
        status: status.as_u16(),
        endpoint: shown.into(),
    })
}
