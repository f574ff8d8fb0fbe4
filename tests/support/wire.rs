//! A client connection in memory, for driving `pinion::http::serve_blocking` on byte slices.

use std::io::{self, Read, Write};

/// Hands out `input` in reads of at most `step` bytes that never cross a cut, and collects
/// everything the server writes in `out`.
pub struct Wire<'a> {
    pub input: &'a [u8],
    pub pos: usize,
    pub cuts: &'a [usize],
    pub step: usize,
    pub out: Vec<u8>,
}

impl<'a> Wire<'a> {
    /// `input` in reads as large as the server asks for.
    pub fn new(input: &'a [u8]) -> Self {
        Wire { input, pos: 0, cuts: &[], step: usize::MAX, out: Vec::new() }
    }
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stop = self.cuts.iter().copied().find(|&c| c > self.pos).unwrap_or(self.input.len());
        let n = (stop.min(self.input.len()) - self.pos).min(self.step).min(buf.len());
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
