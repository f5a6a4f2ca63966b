//! Little-endian reads over a byte slice, for the files this crate writes (stored records,
//! graph snapshots): every read answers `None` past the end instead of panicking, so a
//! damaged file is refused rather than trusted.

use bytes::Bytes;

pub(crate) struct LeReader<'a> {
    pub buf: &'a [u8],
    pub at: usize,
}

impl<'a> LeReader<'a> {
    pub fn new(buf: &'a [u8]) -> LeReader<'a> {
        LeReader { buf, at: 0 }
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A u32 length then that many bytes; `u32::MAX` is absent.
    pub fn bytes(&mut self) -> Option<Option<Bytes>> {
        match self.u32()? {
            u32::MAX => Some(None),
            n => Some(Some(Bytes::copy_from_slice(self.take(n as usize)?))),
        }
    }

    /// Everything read.
    pub fn is_done(&self) -> bool {
        self.at == self.buf.len()
    }
}
