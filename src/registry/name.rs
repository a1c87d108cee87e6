//! Makes a symbol name safe for line-based formats: one record can never become two lines.

use std::borrow::Cow;
use std::fmt::Write;

/// Longest name we write, in bytes; longer ones are cut at a character boundary and end in
/// `...`. perf itself has no limit, but a megabyte-long line per code object helps nobody.
pub const MAX_NAME_BYTES: usize = 4096;

/// Control characters (Unicode's Cc: U+0000-U+001F and U+007F-U+009F), all of which fit in
/// one `\xNN` escape.
fn needs_escape(c: char) -> bool {
    c.is_control()
}

/// Whether every byte is printable ASCII (0x20..=0x7e), eight bytes per step: this check is
/// on the first call of every code object, and a byte loop cost twice as much.
fn printable_ascii(raw: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const TOPS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut words = raw.chunks_exact(8);
    let mut bad = 0;
    for w in &mut words {
        let w = u64::from_ne_bytes(w.try_into().expect("8 bytes"));
        // Top bit of some byte set iff a byte is below 0x20 (it borrows in `w - 0x20..`
        // while its own top bit is clear), or above 0x7e (adding 1 reaches 0x80, or its top
        // bit was set already). Only whether any is set is exact, which is all we ask.
        bad |= (w.wrapping_sub(ONES * 0x20) & !w) | w.wrapping_add(ONES) | w;
    }
    bad & TOPS == 0 && words.remainder().iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// Returns `raw` as valid UTF-8 without control characters: each control character and each
/// byte that is not valid UTF-8 becomes `\xNN` (two hex digits), and the result is at most
/// [`MAX_NAME_BYTES`] long.
pub fn clean(raw: &[u8]) -> Cow<'_, str> {
    // Nearly every name is printable ASCII, and saying so is all the work it needs.
    if raw.len() <= MAX_NAME_BYTES && printable_ascii(raw) {
        // SAFETY: printable ASCII is valid UTF-8.
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(raw) });
    }
    if raw.len() <= MAX_NAME_BYTES
        && let Ok(s) = std::str::from_utf8(raw)
        && !s.chars().any(needs_escape)
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(raw.len().min(MAX_NAME_BYTES) + 8);
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if needs_escape(c) {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
        if out.len() > MAX_NAME_BYTES {
            break;
        }
    }
    if out.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES - 3;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_through_unchanged() {
        let n = "py::Klass.method.<locals>.<lambda>:/srv/app ü.py";
        assert!(matches!(clean(n.as_bytes()), Cow::Borrowed(s) if s == n));
    }

    #[test]
    fn every_control_character_fits_one_hex_escape() {
        let controls: Vec<char> = (0..=0x10ffff)
            .filter_map(char::from_u32)
            .filter(|&c| needs_escape(c))
            .collect();
        assert!(controls.iter().all(|&c| (c as u32) < 0x100), "{controls:?}");
        assert!(controls.contains(&'\u{9f}') && controls.contains(&'\n'));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            clean(b"py::a\nb:\r/x\t.py\x7f"),
            "py::a\\x0ab:\\x0d/x\\x09.py\\x7f"
        );
        // C1 controls such as NEL (U+0085) also end lines in some readers.
        assert_eq!(clean("a\u{85}b\u{2028}".as_bytes()), "a\\x85b\u{2028}");
    }

    #[test]
    fn invalid_utf8_becomes_hex_escapes() {
        assert_eq!(clean(b"py::f:/tmp/\xff\xfe.py"), "py::f:/tmp/\\xff\\xfe.py");
        // A truncated multi-byte sequence in the middle.
        assert_eq!(clean(b"a\xe2\x82b"), "a\\xe2\\x82b");
    }

    proptest::proptest! {
        /// The word-at-a-time check agrees with a byte-by-byte one at every length and
        /// alignment, on bytes drawn mostly from around the edges of the printable range.
        #[test]
        fn printable_ascii_is_exact(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![0x1eu8..0x22, 0x7cu8..0x82, proptest::num::u8::ANY, 0x20u8..0x7f], 0..40),
            skip in 0usize..8,
        ) {
            let bytes = &bytes[skip.min(bytes.len())..];
            proptest::prop_assert_eq!(printable_ascii(bytes), bytes.iter().all(|&b| (0x20..=0x7e).contains(&b)));
        }
    }

    #[test]
    fn huge_names_are_cut_on_a_char_boundary() {
        let long = "é".repeat(1 << 19); // 1 MiB of two-byte characters
        let c = clean(long.as_bytes());
        assert!(c.len() <= MAX_NAME_BYTES, "{}", c.len());
        assert!(c.ends_with("..."));
        assert!(c.trim_end_matches("...").chars().all(|ch| ch == 'é'));
        let newlines = "\n".repeat(1 << 20);
        let c = clean(newlines.as_bytes());
        assert!(c.len() <= MAX_NAME_BYTES && !c.contains('\n'));
    }
}
