//! The CFA rule our `.eh_frame` gives at every instruction boundary of the template, checked
//! against what the instructions really do: objdump (binutils-multiarch) decodes the code,
//! and a small model of each ISA's stack and frame-pointer moves says where the CFA is.

use std::process::Command;

use gimli::{BaseAddresses, CfaRule, EhFrame, UnwindContext, UnwindSection};
use perf_trampoline::{Target, compile, eh_frame, endianness};

/// How one ISA's instructions move the stack pointer and frame pointer.
struct Model {
    triple: &'static str,
    objdump_machine: &'static [&'static str],
    /// DWARF numbers of the stack pointer and frame pointer.
    sp: u16,
    fp: u16,
    /// CFA - SP on entry (the caller's SP, above any ABI save area).
    entry: i64,
    /// Interprets one instruction (mnemonic, operands without spaces after commas).
    step: fn(&str, &str, &mut State),
}

/// CFA - SP, and CFA - FP while FP holds this frame's frame pointer.
#[derive(Debug, Clone, Copy)]
struct State {
    sp_to_cfa: i64,
    fp_to_cfa: Option<i64>,
}

fn unknown(insn: &str, ops: &str) -> ! {
    panic!("the model does not know `{insn} {ops}`: teach it before trusting this test")
}

fn x86_64(insn: &str, ops: &str, s: &mut State) {
    match (insn, ops) {
        ("push", "%rbp") => s.sp_to_cfa += 8,
        ("mov", "%rsp,%rbp") => s.fp_to_cfa = Some(s.sp_to_cfa),
        ("mov", "%rbp,%rsp") => s.sp_to_cfa = s.fp_to_cfa.expect("frame pointer set"),
        ("pop", "%rbp") => {
            s.sp_to_cfa -= 8;
            s.fp_to_cfa = None;
        }
        ("movslq", _) | ("call", _) | ("ret", _) => {}
        _ => unknown(insn, ops),
    }
}

fn aarch64(insn: &str, ops: &str, s: &mut State) {
    match (insn, ops) {
        ("stp", "x29,x30,[sp,#-16]!") => s.sp_to_cfa += 16,
        ("add", "x29,sp,#0x0") => s.fp_to_cfa = Some(s.sp_to_cfa),
        ("ldp", "x29,x30,[sp],#16") => {
            s.sp_to_cfa -= 16;
            s.fp_to_cfa = None;
        }
        ("sxtw", _) | ("blr", _) | ("ret", _) => {}
        _ => unknown(insn, ops),
    }
}

fn riscv64(insn: &str, ops: &str, s: &mut State) {
    match (insn, ops) {
        ("addi", "sp,sp,-16") => s.sp_to_cfa += 16,
        ("addi", "sp,sp,16") => s.sp_to_cfa -= 16,
        ("addi", "s0,sp,16") => s.fp_to_cfa = Some(s.sp_to_cfa - 16),
        ("ld", "s0,0(sp)") => s.fp_to_cfa = None,
        ("sd", _)
        | ("ld", "ra,8(sp)")
        | ("slli", _)
        | ("srai", _)
        | ("jalr", "ra,0(a3)")
        | ("jalr", "zero,0(ra)") => {}
        _ => unknown(insn, ops),
    }
}

fn s390x(insn: &str, ops: &str, s: &mut State) {
    match (insn, ops) {
        ("aghi", "%r15,-160") => s.sp_to_cfa += 160,
        // Restores r15 (the stack pointer) saved at entry: CFA - SP is the entry value again.
        ("lmg", "%r14,%r15,272(%r15)") => s.sp_to_cfa -= 160,
        ("stmg", _)
        | ("lgr", "%r1,%r15")
        | ("stg", "%r1,0(%r15)")
        | ("lgfr", _)
        | ("basr", _)
        | ("br", "%r14") => {}
        _ => unknown(insn, ops),
    }
}

const MODELS: &[Model] = &[
    Model {
        triple: "x86_64-unknown-linux-gnu",
        objdump_machine: &["-m", "i386:x86-64"],
        sp: 7,
        fp: 6,
        entry: 8,
        step: x86_64,
    },
    Model {
        triple: "aarch64-unknown-linux-gnu",
        objdump_machine: &["-m", "aarch64"],
        sp: 31,
        fp: 29,
        entry: 0,
        step: aarch64,
    },
    Model {
        triple: "riscv64gc-unknown-linux-gnu",
        objdump_machine: &["-m", "riscv:rv64"],
        sp: 2,
        fp: 8,
        entry: 0,
        step: riscv64,
    },
    Model {
        triple: "s390x-unknown-linux-gnu",
        objdump_machine: &["-m", "s390:64-bit", "-EB"],
        sp: 15,
        fp: 11,
        entry: 160,
        step: s390x,
    },
];

/// (offset, mnemonic, operands) of each instruction, decoded by objdump.
fn disassemble(code: &[u8], machine: &[&str], tag: &str) -> Vec<(u64, String, String)> {
    // Removed when the guard drops, a failed run's too.
    let file = tempfile::Builder::new()
        .prefix(&format!("pt-unwind-{tag}-"))
        .suffix(".bin")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), code).unwrap();
    let out = Command::new("objdump")
        .args([
            "-D",
            "-b",
            "binary",
            "--no-show-raw-insn",
            "-M",
            "no-aliases",
        ])
        .args(machine)
        .arg(file.path())
        .output()
        .expect("objdump not found: run scripts/install-deps.sh (binutils-multiarch)");
    drop(file);
    assert!(
        out.status.success(),
        "objdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .filter_map(|l| {
            let (off, rest) = l.trim_start().split_once(":\t")?;
            let off = u64::from_str_radix(off, 16).ok()?;
            let rest = rest.trim();
            let (insn, ops) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            Some((
                off,
                insn.to_string(),
                ops.trim().replace(", ", ",").to_string(),
            ))
        })
        .collect()
}

#[test]
fn cfa_rule_matches_the_code_at_every_instruction_boundary() {
    for m in MODELS {
        let t = compile(&Target::parse(m.triple).unwrap(), false).unwrap();
        let insts = disassemble(&t.code, m.objdump_machine, m.triple);
        assert!(insts.len() >= 5, "{}: objdump decoded {insts:?}", m.triple);
        let base = 0x10_0000u64;
        let bytes = eh_frame(&t, base).unwrap();
        let eh = EhFrame::new(&bytes, endianness(&t));
        let bases = BaseAddresses::default();
        let fde = eh
            .fde_for_address(&bases, base, EhFrame::cie_from_offset)
            .unwrap();
        let mut ctx = UnwindContext::new();
        let mut s = State {
            sp_to_cfa: m.entry,
            fp_to_cfa: None,
        };
        for (off, insn, ops) in &insts {
            let want = match s.fp_to_cfa {
                Some(d) => (m.fp, d),
                None => (m.sp, s.sp_to_cfa),
            };
            let row = fde
                .unwind_info_for_address(&eh, &bases, &mut ctx, base + off)
                .unwrap();
            let CfaRule::RegisterAndOffset { register, offset } = *row.cfa() else {
                panic!("{}: CFA expression at {off:#x}", m.triple)
            };
            assert_eq!(
                (register.0, offset),
                want,
                "{}: CFA before `{insn} {ops}` at offset {off:#x}",
                m.triple
            );
            (m.step)(insn, ops, &mut s);
        }
        assert_eq!(
            s.sp_to_cfa, m.entry,
            "{}: the model did not return to the entry state",
            m.triple
        );
    }
}
