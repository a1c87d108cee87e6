//! Where each CPython version keeps the code object in the frame the eval hook receives.

/// How to read the code object out of a hook frame: a pointer-sized field at `offset`,
/// with the tag bits in `!mask` cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    pub offset: usize,
    pub mask: usize,
}

/// The layout for CPython `major.minor` (64-bit release builds), or None if unsupported.
pub fn layout_for(major: u8, minor: u8) -> Option<FrameLayout> {
    let untagged = !0usize;
    match (major, minor) {
        // 3.9, 3.10: a PyFrameObject; f_code follows the var-object header and f_back.
        // 3.11: a _PyInterpreterFrame whose f_code follows f_func, f_globals, f_builtins, f_locals.
        (3, 9..=11) => Some(FrameLayout {
            offset: 32,
            mask: untagged,
        }),
        // 3.12: f_code first; 3.13: f_executable (a plain PyObject*) first.
        (3, 12 | 13) => Some(FrameLayout {
            offset: 0,
            mask: untagged,
        }),
        // 3.14+: f_executable is a _PyStackRef; its low bits are tags, objects are 8-aligned.
        (3, 14 | 15) => Some(FrameLayout {
            offset: 0,
            mask: !7,
        }),
        _ => None,
    }
}

/// The versions `layout_for` knows, for messages.
pub const SUPPORTED: &str = "3.9 to 3.15";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_has_a_layout_and_others_none() {
        for minor in 9..=15 {
            assert!(layout_for(3, minor).is_some(), "3.{minor}");
        }
        assert_eq!(layout_for(3, 8), None);
        assert_eq!(layout_for(3, 16), None);
        assert_eq!(layout_for(4, 0), None);
    }

    #[test]
    fn stackref_versions_clear_tag_bits() {
        let l = layout_for(3, 14).unwrap();
        assert_eq!(0x7f00_1235usize & l.mask, 0x7f00_1230);
        assert_eq!(layout_for(3, 13).unwrap().mask, !0);
    }
}
