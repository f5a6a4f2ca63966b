//! Direct I/O for large appends: the whole 4 KiB blocks in the middle of a write go to the
//! device with `O_DIRECT`, the partial blocks at either end through the page cache. Followers
//! write their replicated chunks this way (their copy is hardly ever read unless they become
//! leader); leaders the appends they also keep in memory for the reads that follow (`recent`).
//!
//! Why: a buffered write fills fresh page-cache pages for every byte. On virtual
//! machines that hand free guest memory back to the host (free page reporting, ballooning), the
//! first touch of such a page faults into the host: on our 2-core VM a buffered write of new
//! file data ran at ~0.6 GB/s of CPU against ~12 GB/s for an overwrite of cached pages, and a
//! three-broker profile spent a third of its CPU in that copy. A direct write hands the block to
//! the device without touching the page cache; it costs one device round trip (on virtio a VM
//! exit and an interrupt), so it only pays for writes of more than about 64 KiB (a 60 KB append
//! cost more system time direct than buffered, a 200 KB one a third, a 1 MB one a tenth).
//!
//! Page-cache coherence holds because the two kinds of write never share a block: the partial
//! block at the start of a write continues the page the previous write left in the cache, the
//! direct range starts at the next block boundary, and Linux invalidates cached pages over a
//! range it writes directly. `fdatasync` on the buffered handle of the same inode makes both
//! durable. Filesystems without `O_DIRECT` fall back to buffered writes.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};

use bytes::{Buf, BytesMut};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Alignment of a direct write's file offset, length and memory. 4 KiB satisfies every device's
/// logical block size and its DMA alignment and matches the page size the page cache uses.
const BLOCK: u64 = 4096;

/// Whole-block bytes below which a write goes through the page cache (see the module doc).
pub const DIRECT_MIN_BYTES: u64 = 256 * 1024;

/// Most bytes copied into the aligned buffer per direct write: bounds each worker thread's
/// buffer however large one replicated append is.
const CHUNK: usize = 1 << 20;

thread_local! {
    /// Aligned staging buffer per thread (received record bytes have no alignment).
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The direct handle of one segment file, opened on its first large replicated write.
#[derive(Debug, Default)]
pub enum DirectFile {
    #[default]
    Untried,
    Open(File),
    /// The filesystem refused `O_DIRECT` (open or write): buffered from now on.
    Unsupported,
}

impl DirectFile {
    fn handle(&mut self, path: &Path) -> Option<&File> {
        if matches!(self, DirectFile::Untried) {
            *self = match open_direct(path) {
                Ok(file) => DirectFile::Open(file),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "no direct I/O for this segment, writing through the page cache");
                    DirectFile::Unsupported
                }
            };
        }
        match self {
            DirectFile::Open(file) => Some(file),
            _ => None,
        }
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Elsewhere (macOS has `F_NOCACHE`, not `O_DIRECT`) every write goes through the page cache.
#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A copy of `data` laid out in memory as it will be in the file from `position`: each byte
/// sits at the same offset within a 4 KiB memory block as within its file block, so the whole
/// blocks of a direct write of it need no aligned staging copy (a leader's append is copied once
/// anyway, to stamp its offsets; the staging copy on top of that was a quarter of a single
/// node's CPU under 1 KB produce load).
pub fn copy_aligned_for(data: &[u8], position: u64) -> BytesMut {
    let block = BLOCK as usize;
    let mut buf = BytesMut::with_capacity(data.len() + block);
    let want = (position % BLOCK) as usize;
    let pad = (want + block - buf.as_ptr() as usize % block) % block;
    buf.resize(pad, 0);
    buf.extend_from_slice(data);
    buf.advance(pad);
    buf
}

/// Write all of `data` at `position` of `file` (whose path is `path`), the aligned middle through
/// `direct` when it is large enough. Returns the bytes written directly.
pub fn write_at(
    file: &File,
    direct: &mut DirectFile,
    path: &Path,
    data: &[u8],
    position: u64,
) -> io::Result<u64> {
    let end = position + data.len() as u64;
    let first_block = position.next_multiple_of(BLOCK);
    let last_block = end - end % BLOCK;
    if last_block < first_block + DIRECT_MIN_BYTES {
        file.write_all_at(data, position)?;
        return Ok(0);
    }
    let Some(handle) = direct.handle(path) else {
        file.write_all_at(data, position)?;
        return Ok(0);
    };
    let head = (first_block - position) as usize;
    let middle_end = (last_block - position) as usize;
    // The head first: the file then ends exactly at the first block boundary, and the direct
    // range extends it without leaving a hole.
    file.write_all_at(&data[..head], position)?;
    let written = write_direct(handle, &data[head..middle_end], first_block)?;
    if written < (middle_end - head) as u64 {
        // The device or filesystem refused mid-way (EINVAL: an alignment it does not accept).
        *direct = DirectFile::Unsupported;
        let from = head + written as usize;
        file.write_all_at(&data[from..middle_end], position + from as u64)?;
    }
    file.write_all_at(&data[middle_end..], last_block)?;
    Ok(written)
}

/// Write whole blocks at the block-aligned `position` through the `O_DIRECT` handle, from
/// `blocks` itself when it is aligned in memory (see [`copy_aligned_for`]), otherwise staged in
/// an aligned buffer. Returns how many bytes were written before the kernel refused the
/// alignment (all of them normally); other errors are returned.
fn write_direct(handle: &File, blocks: &[u8], position: u64) -> io::Result<u64> {
    if (blocks.as_ptr() as usize).is_multiple_of(BLOCK as usize) {
        return write_blocks(handle, blocks, position);
    }
    STAGING.with_borrow_mut(|staging| {
        let need = blocks.len().min(CHUNK) + BLOCK as usize;
        if staging.len() < need {
            staging.resize(need, 0);
        }
        let start = staging.as_ptr().align_offset(BLOCK as usize);
        let mut done = 0usize;
        while done < blocks.len() {
            let len = (blocks.len() - done).min(CHUNK);
            let aligned = &mut staging[start..start + len];
            aligned.copy_from_slice(&blocks[done..done + len]);
            let sent = write_blocks(handle, aligned, position + done as u64)?;
            done += sent as usize;
            if sent < len as u64 {
                break;
            }
        }
        Ok(done as u64)
    })
}

/// Write `aligned` (aligned in memory, whole blocks) at the block-aligned `position`. Returns
/// how many bytes were written before the kernel refused the alignment.
fn write_blocks(handle: &File, aligned: &[u8], position: u64) -> io::Result<u64> {
    let mut sent = 0usize;
    while sent < aligned.len() {
        match handle.write_at(&aligned[sent..], position + sent as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            // A short direct write ends on a block boundary; the rest follows as usual.
            Ok(n) if n % BLOCK as usize == 0 => sent += n,
            Ok(n) => return Ok((sent + n) as u64),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(sent as u64),
            Err(e) => return Err(e),
        }
    }
    Ok(sent as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where /tmp has no direct I/O these tests check the buffered fallback; the log's
    /// integration test writes beside the build and requires the direct path where it exists.
    fn scratch_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    /// An empty segment file in a fresh directory (kept alive by the returned guard).
    fn scratch_file() -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = scratch_dir();
        let path = dir.path().join("seg.log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        (dir, path, file)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn copies_for_a_position_share_its_offset_within_a_block() {
        let (_dir, path, file) = scratch_file();
        let mut direct = DirectFile::default();
        let mut expected = Vec::new();
        for (i, len) in [4_095usize, 300_001, 1, 1_048_576 + 9, 262_144 + 8_192]
            .into_iter()
            .enumerate()
        {
            let data = pattern(len, i as u8);
            let position = expected.len() as u64;
            let copy = copy_aligned_for(&data, position);
            assert_eq!(&copy[..], &data[..]);
            assert_eq!(copy.as_ptr() as u64 % BLOCK, position % BLOCK);
            write_at(&file, &mut direct, &path, &copy, position).expect("write");
            expected.extend_from_slice(&data);
        }
        file.sync_data().expect("sync");
        let mut read = vec![0; expected.len()];
        file.read_exact_at(&mut read, 0).expect("read");
        assert!(read == expected, "content differs");
    }

    #[test]
    fn unaligned_appends_read_back_exactly() {
        let (_dir, path, file) = scratch_file();
        let mut direct = DirectFile::default();
        let mut expected = Vec::new();
        let mut direct_bytes = 0;
        // Small (buffered), large unaligned (direct middle), larger than one staging chunk.
        for (i, len) in [1_000usize, 300_001, 77, 2_500_003, 262_144 + 4_096, 10]
            .into_iter()
            .enumerate()
        {
            let data = pattern(len, i as u8);
            direct_bytes +=
                write_at(&file, &mut direct, &path, &data, expected.len() as u64).expect("write");
            expected.extend_from_slice(&data);
        }
        file.sync_data().expect("sync");
        let mut read = vec![0; expected.len()];
        file.read_exact_at(&mut read, 0).expect("read");
        assert!(read == expected, "content differs");
        assert_eq!(file.metadata().expect("stat").len(), expected.len() as u64);
        match direct {
            DirectFile::Open(_) => assert!(direct_bytes >= 2_000_000, "{direct_bytes}"),
            DirectFile::Unsupported => assert_eq!(direct_bytes, 0),
            DirectFile::Untried => panic!("no write was large enough to try direct I/O"),
        }
        // A fresh handle (another process after a restart) reads the same bytes.
        let again = std::fs::read(&path).expect("read file");
        assert!(again == expected, "content differs on reopen");
    }

    #[test]
    fn small_writes_stay_buffered() {
        let dir = scratch_dir();
        let path = dir.path().join("seg.log");
        let file = File::create(&path).expect("create");
        let mut direct = DirectFile::default();
        let data = pattern(DIRECT_MIN_BYTES as usize, 7);
        // Unaligned start: fewer than DIRECT_MIN_BYTES of whole blocks.
        write_at(&file, &mut direct, &path, &data[..10], 0).expect("write");
        let written = write_at(&file, &mut direct, &path, &data, 10).expect("write");
        assert_eq!(written, 0);
        assert!(matches!(direct, DirectFile::Untried));
    }
}
