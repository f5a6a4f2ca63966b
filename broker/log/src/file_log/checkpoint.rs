//! Offsets checkpointed beside the segments: the pieces of partition state not implied by the
//! segment files.
//! - `log-start-offset`: DeleteRecords can move the start into the middle of a segment.
//! - `replication-offset`: the high watermark of a replicated partition (Kafka's
//!   replication-offset-checkpoint), so a restarted replica does not count its whole local
//!   tail, which may hold records never committed, as committed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub const LOG_START: &str = "log-start-offset";
pub const HIGH_WATERMARK: &str = "replication-offset";

/// The checkpointed offset, `None` when absent or unreadable.
pub fn read(dir: &Path, name: &str) -> Option<i64> {
    let text = fs::read_to_string(dir.join(name)).ok()?;
    match text.trim().parse::<i64>() {
        Ok(offset) if offset >= 0 => Some(offset),
        _ => {
            tracing::warn!(dir = %dir.display(), name, "ignoring an unreadable offset checkpoint");
            None
        }
    }
}

/// Durably replace a checkpoint: write a temporary file, fsync it, rename it over the old one,
/// fsync the directory.
pub fn write(dir: &Path, name: &str, offset: i64) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    writeln!(file, "{offset}")?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Remove a checkpoint (durably).
pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// fsync a directory so that created, renamed or removed entries survive power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
