//! `.eh_frame` and `.eh_frame_hdr` for a trampoline, built with gimli from Cranelift's own
//! unwind info: absolute (to register with an unwinder in-process) or laid out for the ELF
//! image `perf inject --jit` builds around each jitdump `CODE_LOAD` (what src/prebuilt.rs
//! keeps a copy of, checked against this by tests/compiler.rs).

use crate::compile_error::CompileError;
use crate::compiler::Template;
use crate::isa::Isa;
use crate::jit_template::{EH_FRAME_HDR_LEN, JitTemplate, JitUnwind};
use crate::registry::jitdump::dumped_code_size;
use gimli::write::{
    Address, CallFrameInstruction, EhFrame, EndianVec, FrameDescriptionEntry, FrameTable, Writer,
};
use gimli::{self, Register as R, RunTimeEndian, constants};

/// The byte order of the template's ISA (s390x is big-endian).
pub fn endianness(template: &Template) -> RunTimeEndian {
    match template.isa.endianness() {
        cranelift_codegen::ir::Endianness::Little => RunTimeEndian::Little,
        cranelift_codegen::ir::Endianness::Big => RunTimeEndian::Big,
    }
}

fn err(e: gimli::write::Error) -> CompileError {
    CompileError::unwind("writing .eh_frame", e)
}

/// Writes CIE + FDE (+ the zero terminator unwinders look for and gimli does not write).
/// With `pcrel`, `code_address` is relative to the start of the section.
fn write_eh_frame(
    template: &Template,
    code_address: u64,
    pcrel: bool,
) -> Result<(Vec<u8>, usize), CompileError> {
    let mut cie = cie(template)?;
    if pcrel {
        cie.fde_address_encoding = constants::DW_EH_PE_pcrel | constants::DW_EH_PE_sdata4;
    }
    let mut rules = cranelift_rules(template)?;
    rules.extend(patched_rules(template)?);
    // Address order, as an FDE needs; at equal offsets our corrections come last and win.
    rules.sort_by_key(|(at, _)| *at);
    let mut fde =
        FrameDescriptionEntry::new(Address::Constant(code_address), template.code.len() as u32);
    for (at, rule) in rules {
        fde.add_instruction(at, rule);
    }
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie);
    table.add_fde(cie_id, fde);
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

fn cie(template: &Template) -> Result<gimli::write::CommonInformationEntry, CompileError> {
    template
        .isa
        .create_systemv_cie()
        .ok_or_else(|| CompileError::UnexpectedCode("the ISA has no SystemV CIE".into()))
}

/// Cranelift's unwind rules for the template, as (offset, rule). Cranelift only hands them
/// out inside a gimli FDE, which cannot be read back or extended out of order, so we write
/// that FDE and read its rules back.
fn cranelift_rules(template: &Template) -> Result<Vec<(u32, CallFrameInstruction)>, CompileError> {
    use gimli::read::{self, CallFrameInstruction as I, UnwindSection};
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie(template)?);
    table.add_fde(cie_id, template.unwind.to_fde(Address::Constant(0)));
    let mut out = EhFrame(EndianVec::new(endianness(template)));
    table.write_eh_frame(&mut out).map_err(err)?;
    let bytes = out.0.into_vec();
    let section = read::EhFrame::new(&bytes, endianness(template));
    let bases = read::BaseAddresses::default();
    let bad = |e: gimli::read::Error| CompileError::unwind("reading Cranelift's CFI back", e);
    let fde = section
        .fde_for_address(&bases, 0, read::EhFrame::cie_from_offset)
        .map_err(bad)?;
    let (caf, daf) = (
        fde.cie().code_alignment_factor(),
        fde.cie().data_alignment_factor(),
    );
    let mut at = 0u32;
    let mut rules = Vec::new();
    let mut insts = fde.instructions(&section, &bases);
    while let Some(inst) = insts.next().map_err(bad)? {
        let rule = match inst {
            I::AdvanceLoc { delta } => {
                at += delta * caf as u32;
                continue;
            }
            I::Nop => continue,
            I::DefCfa { register, offset } => CallFrameInstruction::Cfa(register, offset as i32),
            I::DefCfaRegister { register } => CallFrameInstruction::CfaRegister(register),
            I::DefCfaOffset { offset } => CallFrameInstruction::CfaOffset(offset as i32),
            I::Offset {
                register,
                factored_offset,
            } => CallFrameInstruction::Offset(register, (factored_offset as i64 * daf) as i32),
            other => {
                return Err(CompileError::UnexpectedCode(format!(
                    "unexpected CFI from Cranelift: {other:?}"
                )));
            }
        };
        rules.push((at, rule));
    }
    Ok(rules)
}

/// Code that Cranelift's unwind info does not describe exactly, and the rules that do.
struct Patch {
    /// Where the code starts: at the start of the function, or at the call's return address.
    after_call: bool,
    /// The machine code the rules are for.
    bytes: &'static [u8],
    /// (offset from the patch's start, rule that holds from there on).
    rules: fn() -> Vec<(u32, CallFrameInstruction)>,
}

/// Per ISA, what Cranelift's unwind info gets wrong for this function. It describes the
/// prologue only, and on riscv64 only once all registers are saved; a sampling profiler can
/// land anywhere, so we describe the whole body. The code's shape is fixed for this one
/// function: if Cranelift ever emits different code there, we refuse rather than guess.
fn patches(arch: Isa) -> Vec<Patch> {
    use CallFrameInstruction as C;
    match arch {
        Isa::X86_64 => vec![Patch {
            after_call: true, // mov rsp, rbp; pop rbp; ret
            bytes: &[0x48, 0x89, 0xec, 0x5d, 0xc3],
            rules: || vec![(4, C::Cfa(R(7), 8)), (4, C::SameValue(R(6)))],
        }],
        Isa::Aarch64 => vec![Patch {
            after_call: true, // ldp x29, x30, [sp], #16; ret
            bytes: &[0xfd, 0x7b, 0xc1, 0xa8, 0xc0, 0x03, 0x5f, 0xd6],
            rules: || {
                vec![
                    (4, C::Cfa(R(31), 0)),
                    (4, C::SameValue(R(29))),
                    (4, C::SameValue(R(30))),
                ]
            },
        }],
        Isa::Riscv64 => vec![
            Patch {
                // addi sp, sp, -16: the CFA moves before ra and s0 are saved; sd ra; sd s0;
                // addi s0, sp, 16: compiler.rs makes s0 the CFA itself.
                after_call: false,
                bytes: &[
                    0x13, 0x01, 0x01, 0xff, 0x23, 0x34, 0x11, 0x00, 0x23, 0x30, 0x81, 0x00, 0x13,
                    0x04, 0x01, 0x01,
                ],
                rules: || vec![(4, C::CfaOffset(16)), (16, C::Cfa(R(8), 0))],
            },
            Patch {
                after_call: true, // ld ra, 8(sp); ld s0, 0(sp); addi sp, sp, 16; ret
                bytes: &[
                    0x83, 0x30, 0x81, 0x00, 0x03, 0x34, 0x01, 0x00, 0x13, 0x01, 0x01, 0x01, 0x67,
                    0x80, 0x00, 0x00,
                ],
                rules: || {
                    vec![
                        (4, C::SameValue(R(1))),
                        (8, C::Cfa(R(2), 16)),
                        (8, C::SameValue(R(8))),
                        (12, C::CfaOffset(0)),
                    ]
                },
            },
        ],
        Isa::S390x => vec![Patch {
            after_call: true, // lmg %r14, %r15, 272(%r15); br %r14
            bytes: &[0xeb, 0xef, 0xf1, 0x10, 0x00, 0x04, 0x07, 0xfe],
            rules: || vec![(6, C::CfaOffset(160)), (6, C::SameValue(R(14)))],
        }],
    }
}

/// The rules of [`patches`] for `template`, at offsets from the start of the code.
fn patched_rules(template: &Template) -> Result<Vec<(u32, CallFrameInstruction)>, CompileError> {
    let mut out = Vec::new();
    for p in patches(template.arch) {
        let start = if p.after_call {
            template.call_return_offset
        } else {
            0
        } as usize;
        let code = template.code.get(start..start + p.bytes.len());
        if code != Some(p.bytes) {
            return Err(CompileError::UnexpectedCode(format!(
                "at +{start}: {:02x?} (expected {:02x?}); its unwind rules would be wrong",
                code.unwrap_or(&[]),
                p.bytes
            )));
        }
        out.extend(
            (p.rules)()
                .into_iter()
                .map(|(at, rule)| (start as u32 + at, rule)),
        );
    }
    Ok(out)
}

/// A complete `.eh_frame` section describing the template loaded at `code_address`.
pub fn eh_frame(template: &Template, code_address: u64) -> Result<Vec<u8>, CompileError> {
    write_eh_frame(template, code_address, false).map(|(bytes, _)| bytes)
}

/// Unwind data for a jitdump whose `CODE_LOAD`s carry `code_size` bytes of code.
///
/// `perf inject --jit` writes each function as an ELF image with the code at some text
/// offset and `.eh_frame` at `align8(text offset + code_size)` (text offsets are multiples
/// of 8 in every perf version), `.eh_frame_hdr` right after it. Everything here is relative
/// to those places, so it is the same for every slot.
pub fn jitdump_unwind(template: &Template, code_size: u64) -> Result<JitUnwind, CompileError> {
    let text_to_eh_frame = code_size.next_multiple_of(8);
    let (mut data, fde_offset) = write_eh_frame(template, text_to_eh_frame.wrapping_neg(), true)?;
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
    CompileError::UnexpectedCode("eh_frame offsets do not fit in 32 bits".into())
}

/// What a jitdump needs of `template` (see [`JitTemplate`]).
pub fn jit_template(template: &Template) -> Result<JitTemplate, CompileError> {
    Ok(JitTemplate {
        arch: template.arch,
        code: template.code.clone(),
        unwind: jitdump_unwind(template, dumped_code_size(template.code.len()))?,
    })
}
