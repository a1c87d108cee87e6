//! The template Cranelift builds for each of the four ISAs: frame record, a real call through
//! the 4th argument register, no tail call, and unwind info that describes the frame.

use gimli::{BaseAddresses, CfaRule, EhFrame, RegisterRule, UnwindContext, UnwindSection};
use perf_trampoline::{
    Target, Template, compile, eh_frame, endianness, jit_template, prebuilt_code,
    prebuilt_host_code, prebuilt_jit_template,
};

/// ABI facts per ISA (from each psABI and its DWARF register numbering), not outputs of ours.
struct Isa {
    triple: &'static str,
    /// Disassembly lines (substrings) that set up the frame record, in order.
    frame_setup: &'static [&'static str],
    /// The call through the register that holds the 4th integer argument.
    call: &'static str,
    /// Machine encoding of that call, as it must appear right before the return address.
    call_bytes: &'static [u8],
    /// A register-indirect jump through the same register would be a tail call.
    tail_jump: &'static str,
    /// DWARF number of the register the CFA is based on once the frame is set up, and the
    /// CFA's offset from it.
    cfa_reg: u16,
    cfa_offset: i64,
    /// DWARF number of the frame pointer and where the prologue saved it (CFA-relative), if
    /// the ISA keeps a frame-pointer chain (s390x links frames with its back chain instead).
    saved_fp: Option<(u16, i64)>,
}

const ISAS: &[Isa] = &[
    Isa {
        triple: "x86_64-unknown-linux-gnu",
        frame_setup: &["pushq %rbp", "movq %rsp, %rbp"],
        call: "call    *%rcx",
        call_bytes: &[0xff, 0xd1],
        tail_jump: "jmp",
        cfa_reg: 6,
        cfa_offset: 16,
        saved_fp: Some((6, -16)),
    },
    Isa {
        triple: "aarch64-unknown-linux-gnu",
        frame_setup: &["stp fp, lr, [sp, #-16]!", "mov fp, sp"],
        call: "blr x3",
        call_bytes: &[0x60, 0x00, 0x3f, 0xd6],
        tail_jump: "br x3",
        cfa_reg: 29,
        cfa_offset: 16,
        saved_fp: Some((29, -16)),
    },
    Isa {
        triple: "riscv64gc-unknown-linux-gnu",
        frame_setup: &["sd ra,8(sp)", "sd fp,0(sp)", "addi fp,sp,16"],
        call: "callind a3",
        call_bytes: &[0xe7, 0x80, 0x06, 0x00],
        tail_jump: "jr a3",
        cfa_reg: 8,
        cfa_offset: 0,
        saved_fp: Some((8, -16)),
    },
    Isa {
        triple: "s390x-unknown-linux-gnu",
        // Save r14/r15, allocate the 160-byte register save area, store the back chain.
        frame_setup: &["stmg %r14, %r15", "aghi %r15, -160", "stg %r1, 0(%r15)"],
        call: "basr %r14, %r5",
        call_bytes: &[0x0d, 0xe5],
        tail_jump: "br %r5",
        cfa_reg: 15,
        cfa_offset: 320,
        saved_fp: None,
    },
];

fn template(isa: &Isa) -> Template {
    compile(&Target::parse(isa.triple).unwrap(), true)
        .unwrap_or_else(|e| panic!("{}: {e}", isa.triple))
}

fn instructions(t: &Template) -> Vec<String> {
    t.disassembly
        .as_deref()
        .expect("disassembly was requested")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("unwind") && !l.ends_with(':'))
        .map(String::from)
        .collect()
}

#[test]
fn frame_record_is_set_up_before_the_call() {
    for isa in ISAS {
        let insts = instructions(&template(isa));
        let mut at = 0;
        for want in isa.frame_setup {
            let pos = insts[at..]
                .iter()
                .position(|i| i.contains(want))
                .unwrap_or_else(|| panic!("{}: no `{want}` in order in {insts:#?}", isa.triple));
            at += pos + 1;
        }
        let call = insts.iter().position(|i| i.contains(isa.call)).unwrap();
        assert!(
            call >= at,
            "{}: call before the frame is complete: {insts:#?}",
            isa.triple
        );
    }
}

#[test]
fn the_call_goes_through_the_fourth_argument_register() {
    for isa in ISAS {
        let t = template(isa);
        let calls: Vec<_> = instructions(&t)
            .into_iter()
            .filter(|i| i.contains("call") || i.contains("blr") || i.contains("basr"))
            .collect();
        assert_eq!(calls.len(), 1, "{}: {calls:?}", isa.triple);
        assert!(calls[0].contains(isa.call), "{}: {calls:?}", isa.triple);
        let end = t.call_return_offset as usize;
        assert_eq!(
            &t.code[end - isa.call_bytes.len()..end],
            isa.call_bytes,
            "{}: bytes before the return address are not the expected call",
            isa.triple
        );
    }
}

#[test]
fn there_is_no_tail_call() {
    for isa in ISAS {
        let t = template(isa);
        let insts = instructions(&t);
        assert!(
            !insts
                .iter()
                .any(|i| i.starts_with(isa.tail_jump) || i.contains("return_call")),
            "{}: tail jump in {insts:#?}",
            isa.triple
        );
        // The call returns into our own code, which then returns.
        assert!(t.call_return_offset < t.code.len() as u32, "{}", isa.triple);
        let last = insts.last().unwrap();
        assert!(
            last.starts_with("ret") || last.starts_with("br %r14"),
            "{}: ends with {last}",
            isa.triple
        );
    }
}

#[test]
fn unwind_info_describes_the_frame_at_the_call() {
    for isa in ISAS {
        let t = template(isa);
        let base = 0x4000_0000u64;
        let bytes = eh_frame(&t, base).unwrap();
        let eh = EhFrame::new(&bytes, endianness(&t));
        let bases = BaseAddresses::default().set_eh_frame(0);
        let mut ctx = UnwindContext::new();
        let call_addr = base + u64::from(t.call_return_offset) - 1;
        let fde = eh
            .fde_for_address(&bases, call_addr, EhFrame::cie_from_offset)
            .unwrap_or_else(|e| panic!("{}: no FDE covers the call: {e}", isa.triple));
        assert_eq!(fde.initial_address(), base, "{}", isa.triple);
        assert_eq!(
            fde.len(),
            t.code.len() as u64,
            "{}: FDE must cover exactly the code",
            isa.triple
        );
        let row = fde
            .unwind_info_for_address(&eh, &bases, &mut ctx, call_addr)
            .unwrap();
        assert_eq!(
            *row.cfa(),
            CfaRule::RegisterAndOffset {
                register: gimli::Register(isa.cfa_reg),
                offset: isa.cfa_offset
            },
            "{}",
            isa.triple
        );
        if let Some((fp, off)) = isa.saved_fp {
            assert_eq!(
                row.register(gimli::Register(fp)),
                Some(RegisterRule::Offset(off)),
                "{}",
                isa.triple
            );
        }
    }
}

#[test]
fn the_prebuilt_code_is_what_cranelift_builds() {
    let mut stale = Vec::new();
    for isa in ISAS {
        let t = template(isa);
        if prebuilt_code(t.arch) != t.code.as_slice() {
            let bytes: Vec<String> = t.code.iter().map(|b| format!("{b:#04x}")).collect();
            stale.push(format!("Isa::{:?} => &[{}],", t.arch, bytes.join(", ")));
        }
    }
    assert!(
        stale.is_empty(),
        "src/prebuilt.rs is out of date; its arms are now:\n{}",
        stale.join("\n")
    );
    let host = compile(&Target::Host, false).unwrap();
    assert_eq!(
        prebuilt_host_code(),
        Some(host.code.as_slice()),
        "the host's own flags build other code"
    );
}

#[test]
fn the_prebuilt_jitdump_unwind_sections_are_what_cranelift_gives() {
    let mut stale = Vec::new();
    for isa in ISAS {
        let made = jit_template(&template(isa)).unwrap();
        if prebuilt_jit_template(made.arch) != made {
            let bytes: Vec<String> = made
                .unwind
                .data
                .iter()
                .map(|b| format!("{b:#04x}"))
                .collect();
            stale.push(format!("Isa::{:?} => &[{}],", made.arch, bytes.join(", ")));
        }
    }
    assert!(
        stale.is_empty(),
        "src/prebuilt.rs's jit_unwind is out of date; its arms are now:\n{}",
        stale.join("\n")
    );
}
