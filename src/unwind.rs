//! `.eh_frame` for a trampoline, built with gimli from Cranelift's own unwind info.

use cranelift_codegen::gimli::write::{Address, EhFrame, EndianVec, FrameTable};
use cranelift_codegen::gimli::{self, RunTimeEndian};

use crate::compiler::{CompileError, Template};

/// The byte order of the template's ISA (s390x is big-endian).
pub fn endianness(template: &Template) -> RunTimeEndian {
    match template.isa.endianness() {
        cranelift_codegen::ir::Endianness::Little => RunTimeEndian::Little,
        cranelift_codegen::ir::Endianness::Big => RunTimeEndian::Big,
    }
}

/// A complete `.eh_frame` section (CIE, one FDE for the template at `code_address`, and the
/// zero terminator that unwinders look for and gimli does not write).
pub fn eh_frame(template: &Template, code_address: u64) -> Result<Vec<u8>, CompileError> {
    let err = |e: gimli::write::Error| CompileError::Cranelift(format!("eh_frame: {e}"));
    let cie = template
        .isa
        .create_systemv_cie()
        .ok_or_else(|| CompileError::Cranelift("ISA has no SystemV CIE".into()))?;
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie);
    table.add_fde(cie_id, template.unwind.to_fde(Address::Constant(code_address)));
    let mut out = EhFrame(EndianVec::new(endianness(template)));
    table.write_eh_frame(&mut out).map_err(err)?;
    let mut bytes = out.0.into_vec();
    bytes.extend_from_slice(&[0; 4]);
    Ok(bytes)
}
