//! `.eh_frame` and `.eh_frame_hdr` for a trampoline, built with gimli from Cranelift's own
//! unwind info: absolute (to register with an unwinder in-process) or laid out for the ELF
//! image `perf inject --jit` builds around each jitdump `CODE_LOAD`.

use cranelift_codegen::gimli::write::{Address, EhFrame, EndianVec, FrameTable, Writer};
use cranelift_codegen::gimli::{self, RunTimeEndian, constants};

use crate::compiler::{CompileError, Template};

/// The byte order of the template's ISA (s390x is big-endian).
pub fn endianness(template: &Template) -> RunTimeEndian {
    match template.isa.endianness() {
        cranelift_codegen::ir::Endianness::Little => RunTimeEndian::Little,
        cranelift_codegen::ir::Endianness::Big => RunTimeEndian::Big,
    }
}

fn err(e: gimli::write::Error) -> CompileError {
    CompileError::Cranelift(format!("eh_frame: {e}"))
}

/// Writes CIE + FDE (+ the zero terminator unwinders look for and gimli does not write).
/// With `pcrel`, `code_address` is relative to the start of the section.
fn write_eh_frame(template: &Template, code_address: u64, pcrel: bool) -> Result<(Vec<u8>, usize), CompileError> {
    let mut cie = template
        .isa
        .create_systemv_cie()
        .ok_or_else(|| CompileError::Cranelift("ISA has no SystemV CIE".into()))?;
    if pcrel {
        cie.fde_address_encoding = constants::DW_EH_PE_pcrel | constants::DW_EH_PE_sdata4;
    }
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie);
    table.add_fde(cie_id, template.unwind.to_fde(Address::Constant(code_address)));
    let mut out = EhFrame(EndianVec::new(endianness(template)));
    table.write_eh_frame(&mut out).map_err(err)?;
    out.0.write_u32(0).map_err(err)?;
    let bytes = out.0.into_vec();
    // One CIE at offset 0, then our FDE: it starts after the CIE's length field and body.
    let cie_len: [u8; 4] = bytes[..4].try_into().expect("a CIE was written");
    let cie_len = match endianness(template) {
        RunTimeEndian::Little => u32::from_le_bytes(cie_len),
        RunTimeEndian::Big => u32::from_be_bytes(cie_len),
    };
    Ok((bytes, 4 + cie_len as usize))
}

/// A complete `.eh_frame` section describing the template loaded at `code_address`.
pub fn eh_frame(template: &Template, code_address: u64) -> Result<Vec<u8>, CompileError> {
    write_eh_frame(template, code_address, false).map(|(bytes, _)| bytes)
}

/// Size of the `.eh_frame_hdr` we write: version, 3 encodings, eh_frame_ptr, fde_count, and
/// one (initial location, FDE address) pair.
pub const EH_FRAME_HDR_LEN: usize = 20;

/// Unwind data for one jitdump `CODE_UNWINDING_INFO` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitUnwind {
    /// `.eh_frame` followed by `.eh_frame_hdr`: the order perf's reader splits them in
    /// (the jitdump spec's prose says the reverse; perf, V8 and CPython all do this).
    pub data: Vec<u8>,
    pub eh_frame_hdr_size: u64,
    /// Bytes perf maps after the code for the unwind sections: the slot stride must leave
    /// at least `align8(code_size) + mapped_size` per slot, or synthetic ranges overlap.
    pub mapped_size: u64,
}

/// Unwind data for a jitdump whose `CODE_LOAD`s carry `code_size` bytes of code.
///
/// `perf inject --jit` writes each function as an ELF image with the code at some text
/// offset and `.eh_frame` at `align8(text offset + code_size)` (text offsets are multiples
/// of 8 in every perf version), `.eh_frame_hdr` right after it. Everything here is relative
/// to those places, so it is the same for every slot.
pub fn jitdump_unwind(template: &Template, code_size: u64) -> Result<JitUnwind, CompileError> {
    let text_to_eh_frame = code_size.next_multiple_of(8);
    let (mut data, fde_offset) =
        write_eh_frame(template, text_to_eh_frame.wrapping_neg(), true)?;
    let eh_frame_len = data.len() as i64;
    let mut hdr = EndianVec::new(endianness(template));
    let e = |r: gimli::write::Result<()>| r.map_err(err);
    e(hdr.write_u8(1))?; // version
    e(hdr.write_u8((constants::DW_EH_PE_pcrel | constants::DW_EH_PE_sdata4).0))?; // eh_frame_ptr
    e(hdr.write_u8(constants::DW_EH_PE_udata4.0))?; // fde_count
    e(hdr.write_u8((constants::DW_EH_PE_datarel | constants::DW_EH_PE_sdata4).0))?; // table
    // eh_frame_ptr, relative to the field itself (4 bytes into the header).
    let sdata4 = |v: i64| i32::try_from(v).map(|v| v as u32).map_err(|_| too_big());
    e(hdr.write_u32(sdata4(-(eh_frame_len + 4))?))?;
    e(hdr.write_u32(1))?;
    // The one table entry, relative to the header's start: the code, then its FDE.
    e(hdr.write_u32(sdata4(-(text_to_eh_frame as i64 + eh_frame_len))?))?;
    e(hdr.write_u32(sdata4(fde_offset as i64 - eh_frame_len)?))?;
    let hdr = hdr.into_vec();
    debug_assert_eq!(hdr.len(), EH_FRAME_HDR_LEN);
    data.extend_from_slice(&hdr);
    Ok(JitUnwind {
        mapped_size: (data.len() as u64).next_multiple_of(8),
        eh_frame_hdr_size: hdr.len() as u64,
        data,
    })
}

fn too_big() -> CompileError {
    CompileError::Cranelift("eh_frame offsets do not fit in 32 bits".into())
}
