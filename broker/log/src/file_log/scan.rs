//! Walking the batches of a segment file with positional reads, a window at a time, so scanning
//! forward from an index entry costs one or two syscalls rather than one per batch.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::batch::{self, BatchHeader, BATCH_HEADER_LEN};

/// Read-ahead for header-only scans (reads, timestamp lookups).
pub const HEADER_WINDOW: usize = 64 * 1024;
/// Read-ahead for scans that check CRCs (recovery, index rebuilds).
pub const VERIFY_WINDOW: usize = 1024 * 1024;

/// One step of a scan.
#[derive(Debug)]
pub enum Step {
    /// A batch starts at this position.
    Batch(u64, BatchHeader),
    /// The scan reached `end` cleanly.
    End,
    /// The bytes at this position are not a whole valid batch.
    Invalid(u64, String),
}

/// Iterates the batches of `file` in `[position, end)`.
#[derive(Debug)]
pub struct BatchCursor<'a> {
    file: &'a File,
    position: u64,
    end: u64,
    window: Vec<u8>,
    window_start: u64,
    window_size: usize,
}

impl<'a> BatchCursor<'a> {
    pub fn new(file: &'a File, position: u64, end: u64, window_size: usize) -> Self {
        BatchCursor {
            file,
            position,
            end,
            window: Vec::new(),
            window_start: 0,
            window_size,
        }
    }

    /// The next batch. With `verify` its CRC and structure are checked too; without it only that
    /// it fits before `end`.
    pub fn next(&mut self, verify: bool) -> io::Result<Step> {
        let pos = self.position;
        if pos >= self.end {
            return Ok(Step::End);
        }
        let remaining = self.end - pos;
        if remaining < BATCH_HEADER_LEN as u64 {
            return Ok(Step::Invalid(
                pos,
                format!("partial batch header of {remaining} bytes"),
            ));
        }
        let header = match BatchHeader::parse(self.bytes(pos, BATCH_HEADER_LEN)?) {
            Ok(h) => h,
            Err(e) => return Ok(Step::Invalid(pos, e.to_string())),
        };
        if let Err(e) = batch::check_structure(&header) {
            return Ok(Step::Invalid(pos, e.to_string()));
        }
        let len = header.total_len();
        if len as u64 > remaining {
            return Ok(Step::Invalid(
                pos,
                format!("batch of {len} bytes but only {remaining} remain"),
            ));
        }
        if verify {
            if let Err(e) = batch::check_crc(&header, self.bytes(pos, len)?) {
                return Ok(Step::Invalid(pos, e.to_string()));
            }
        }
        self.position = pos + len as u64;
        Ok(Step::Batch(pos, header))
    }

    /// `len` bytes at `pos`, refilling the window when they are not all in it.
    fn bytes(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let window_end = self.window_start + self.window.len() as u64;
        if pos < self.window_start || pos + len as u64 > window_end {
            let want = (self.end - pos).min(self.window_size.max(len) as u64) as usize;
            self.window.resize(want, 0);
            self.file.read_exact_at(&mut self.window, pos)?;
            self.window_start = pos;
        }
        let at = (pos - self.window_start) as usize;
        Ok(&self.window[at..at + len])
    }
}
