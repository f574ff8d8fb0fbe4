//! Sixteen bytes at a time with SSE2 (part of the x86_64 baseline: no runtime check). Each
//! function flags bytes of one 16-byte chunk as the bits of a mask (bit `i`: byte `i`).
#![allow(unsafe_code, reason = "SSE2 intrinsics (they are unsafe functions) and their unaligned loads and stores")]

// SAFETY (every block below): the intrinsics need SSE2, which every x86_64 processor has
// (it is part of the target's baseline); the loads and the store touch exactly the 16
// bytes of the chunk given, at any alignment (`loadu`, `storeu`).
use std::arch::x86_64::{
    __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
    _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_setr_epi8, _mm_storeu_si128,
};

/// Bytes from `lo` to `hi` (both below 0x80). The compares are signed: bytes from 0x80 are
/// negative, below every such range.
#[inline(always)]
unsafe fn within(x: __m128i, lo: u8, hi: u8) -> __m128i {
    // SAFETY: see the top of the module.
    unsafe {
        _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(lo as i8 - 1)), _mm_cmplt_epi8(x, _mm_set1_epi8(hi as i8 + 1)))
    }
}

/// Bytes that are not letters, digits or `-`; the letters before the first of them are
/// lower-cased.
#[inline(always)]
pub(super) fn name_stops_lowercased(chunk: &mut [u8; 16]) -> u32 {
    // SAFETY: see the top of the module.
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        let letter = within(_mm_or_si128(x, _mm_set1_epi8(0x20)), b'a', b'z');
        let dash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'-' as i8));
        let plain = _mm_or_si128(_mm_or_si128(letter, within(x, b'0', b'9')), dash);
        let other = !(_mm_movemask_epi8(plain) as u32) & 0xffff;
        let name = before(other.trailing_zeros().min(16));
        let lower = _mm_or_si128(x, _mm_and_si128(_mm_and_si128(letter, name), _mm_set1_epi8(0x20)));
        _mm_storeu_si128(chunk.as_mut_ptr().cast(), lower);
        other
    }
}

/// (bytes that are not visible ASCII or are `#`, `?`s).
#[inline(always)]
pub(super) fn target_stops(chunk: &[u8; 16]) -> (u32, u32) {
    // SAFETY: see the top of the module.
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        let visible = within(x, b'!', b'~');
        let hash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'#' as i8));
        let question = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'?' as i8));
        (!(_mm_movemask_epi8(_mm_andnot_si128(hash, visible)) as u32) & 0xffff, _mm_movemask_epi8(question) as u32)
    }
}

/// (bytes that end a field value: controls but HTAB, and DEL; blanks: SP and HTAB).
#[inline(always)]
pub(super) fn value_stops(chunk: &[u8; 16]) -> (u32, u32) {
    // SAFETY: see the top of the module.
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        let tab = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\t' as i8));
        // Unsigned: at most 0x1f (obs-text, from 0x80, is a value byte).
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
        let del = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f));
        let blank = _mm_or_si128(tab, _mm_cmpeq_epi8(x, _mm_set1_epi8(b' ' as i8)));
        (_mm_movemask_epi8(_mm_or_si128(_mm_andnot_si128(tab, control), del)) as u32, _mm_movemask_epi8(blank) as u32)
    }
}

/// (letters, digits, `-`, `.` and `:`; the `:`s; the digits).
#[inline(always)]
pub(super) fn host_parts(chunk: &[u8; 16]) -> (u32, u32, u32) {
    // SAFETY: see the top of the module.
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        let letter = within(_mm_or_si128(x, _mm_set1_epi8(0x20)), b'a', b'z');
        let digit = within(x, b'0', b'9');
        let colon = _mm_cmpeq_epi8(x, _mm_set1_epi8(b':' as i8));
        let dash_dot = within(x, b'-', b'.');
        let common = _mm_or_si128(_mm_or_si128(letter, digit), _mm_or_si128(colon, dash_dot));
        (_mm_movemask_epi8(common) as u32, _mm_movemask_epi8(colon) as u32, _mm_movemask_epi8(digit) as u32)
    }
}

/// The bytes before byte `n` (at most 16).
#[inline(always)]
unsafe fn before(n: u32) -> __m128i {
    // SAFETY: see the top of the module.
    unsafe {
        let index = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        _mm_cmpgt_epi8(_mm_set1_epi8(n as i8), index)
    }
}
