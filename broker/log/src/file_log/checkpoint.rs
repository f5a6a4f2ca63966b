//! The `log-start-offset` checkpoint: the one piece of partition state that is not implied by
//! the segment files, because DeleteRecords can move the start into the middle of a segment.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

const FILE_NAME: &str = "log-start-offset";

/// The checkpointed log start offset, `None` when absent or unreadable (the first segment's base
/// offset is the start then).
pub fn read(dir: &Path) -> Option<i64> {
    let text = fs::read_to_string(dir.join(FILE_NAME)).ok()?;
    match text.trim().parse::<i64>() {
        Ok(offset) if offset >= 0 => Some(offset),
        _ => {
            tracing::warn!(dir = %dir.display(), "ignoring unreadable log-start-offset checkpoint");
            None
        }
    }
}

/// Durably replace the checkpoint: write a temporary file, fsync it, rename it over the old one,
/// fsync the directory.
pub fn write(dir: &Path, offset: i64) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = File::create(&tmp)?;
    writeln!(file, "{offset}")?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(FILE_NAME))?;
    sync_dir(dir)
}

/// fsync a directory so that created, renamed or removed entries survive power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
