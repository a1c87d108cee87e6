//! What a jitdump needs of the template: its ISA, its code, and the unwind sections `perf
//! inject --jit` places after each copy. The host's comes prebuilt (src/prebuilt.rs); builds
//! with Cranelift can make one for any ISA (src/unwind.rs).

use crate::isa::Isa;

/// Size of the `.eh_frame_hdr` we write: version, 3 encodings, eh_frame_ptr, fde_count, and
/// one (initial location, FDE address) pair.
pub const EH_FRAME_HDR_LEN: usize = 20;

/// The template as a jitdump writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitTemplate {
    /// The ISA the code is for.
    pub arch: Isa,
    /// The template's machine code.
    pub code: Vec<u8>,
    /// Its unwind sections, for `CODE_LOAD`s of the code plus its salt.
    pub unwind: JitUnwind,
}

/// Unwind data for one jitdump `CODE_UNWINDING_INFO` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitUnwind {
    /// `.eh_frame` followed by `.eh_frame_hdr`: the order perf's reader splits them in
    /// (the jitdump spec's prose says the reverse; perf, V8 and CPython all do this).
    pub data: Vec<u8>,
    /// Bytes of `.eh_frame_hdr` at the end of `data`.
    pub eh_frame_hdr_size: u64,
    /// Bytes perf maps after the code for the unwind sections: the slot stride must leave
    /// at least `align8(code_size) + mapped_size` per slot, or synthetic ranges overlap.
    pub mapped_size: u64,
}
