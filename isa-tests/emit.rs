//! isa-tests emitter: writes one C header per ISA with our template, its .eh_frame per load address, and a broken copy.
//!
//! Usage: `isa_emit <out-dir>` writes `<out-dir>/<isa>/tramp.h` for each of the four ISAs. The
//! harness (`isa-tests/harness.c`) maps copies exactly at the addresses named in the header,
//! because `.eh_frame` carries absolute addresses: every byte the harness runs or registers
//! comes from the library, nothing is recomputed in C.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

use perf_trampoline::{READ_SLACK, SLOT_ALIGN, Target, Template, compile, eh_frame};

/// Where the harness maps the good copies, and why there (4 KiB pages, as qemu-user has on
/// this host). Above 4 GiB, a pc_begin cut to 32 bits would name another address. The last
/// two are where trouble lives: code longer than 16 bytes crosses into a second page (the FDE
/// range and the icache flush must cover both), and the last slot the arena would stamp into
/// a chunk has nothing mapped after it (anything reading past the code faults). All lie below
/// 2^38, the smallest user address space of the four (riscv64 Sv39).
fn copy_addresses(code_len: usize) -> [(u64, &'static str); 4] {
    // The arena's slot stride for this template (its length rounded up to SLOT_ALIGN), and
    // where it puts the last copy of a one-page chunk: it keeps READ_SLACK bytes free at the end.
    let stride = (code_len as u64).next_multiple_of(SLOT_ALIGN as u64);
    let last = (4096 - READ_SLACK as u64) / stride - 1;
    [
        (0x2000_0000, "page start"),
        (0x10_4000_0010, "above 4 GiB"),
        (0x3000_1000 - 16, "16 bytes before a page end"),
        (0x3400_0000 + last * stride, "last arena slot of a mapping"),
    ]
}

/// Where the broken copy goes. It gets no .eh_frame: the negative test is about the
/// frame-pointer chain, which is all a `perf record -g` walk has.
const BROKEN_ADDRESS: u64 = 0x3800_0000;

struct Isa {
    /// The harness's name for the ISA: the output directory, `qemu-<name>`, `<name>-linux-gnu-gcc`.
    name: &'static str,
    triple: &'static str,
    /// How the broken copy is made: each listed instruction is replaced by a no-op of the same
    /// length. They are the ones that link the new frame record into the chain (on x86-64
    /// also the epilogue's `mov %rbp, %rsp`, which would otherwise load the caller's rbp into
    /// rsp). The record is still saved and restored and the call still goes through, so the
    /// copy behaves correctly except that a frame-pointer walk cannot see it as a frame.
    unlink: &'static [Patch],
}

struct Patch {
    asm: &'static str,
    bytes: &'static [u8],
    nop: &'static [u8],
}

const ISAS: &[Isa] = &[
    Isa {
        name: "x86_64",
        triple: "x86_64-unknown-linux-gnu",
        unlink: &[
            Patch {
                asm: "movq %rsp, %rbp",
                bytes: &[0x48, 0x89, 0xe5],
                nop: &[0x0f, 0x1f, 0x00],
            },
            Patch {
                asm: "movq %rbp, %rsp",
                bytes: &[0x48, 0x89, 0xec],
                nop: &[0x0f, 0x1f, 0x00],
            },
        ],
    },
    Isa {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        unlink: &[Patch {
            asm: "mov fp, sp",
            bytes: &[0xfd, 0x03, 0x00, 0x91],
            nop: &[0x1f, 0x20, 0x03, 0xd5],
        }],
    },
    Isa {
        name: "riscv64",
        triple: "riscv64gc-unknown-linux-gnu",
        unlink: &[Patch {
            asm: "addi fp,sp,16",
            bytes: &[0x13, 0x04, 0x01, 0x01],
            nop: &[0x13, 0x00, 0x00, 0x00],
        }],
    },
    Isa {
        name: "s390x",
        triple: "s390x-unknown-linux-gnu",
        // The back-chain store; `brcl 0, 0` is the 6-byte no-op.
        unlink: &[Patch {
            asm: "stg %r1, 0(%r15)",
            bytes: &[0xe3, 0x10, 0xf0, 0x00, 0x00, 0x24],
            nop: &[0xc0, 0x04, 0x00, 0x00, 0x00, 0x00],
        }],
    },
];

/// The template with every patch applied; each pattern must occur exactly once, so a change
/// in Cranelift's output stops the suite here instead of yielding a "broken" copy that is not.
fn broken_copy(isa: &Isa, code: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = code.to_vec();
    for p in isa.unlink {
        let hits: Vec<usize> = code
            .windows(p.bytes.len())
            .enumerate()
            .filter(|(_, w)| *w == p.bytes)
            .map(|(i, _)| i)
            .collect();
        let [at] = hits[..] else {
            return Err(format!(
                "{}: `{}` ({:02x?}) occurs {} times in the template {:02x?}",
                isa.name,
                p.asm,
                p.bytes,
                hits.len(),
                code
            ));
        };
        out[at..at + p.nop.len()].copy_from_slice(p.nop);
    }
    Ok(out)
}

fn c_array(out: &mut String, name: &str, bytes: &[u8]) {
    // Aligned because libgcc reads .eh_frame words in place.
    writeln!(
        out,
        "static const unsigned char {name}[{}] __attribute__((aligned(8))) = {{",
        bytes.len()
    )
    .unwrap();
    for line in bytes.chunks(12) {
        let items: Vec<String> = line.iter().map(|b| format!("0x{b:02x}")).collect();
        writeln!(out, "    {},", items.join(", ")).unwrap();
    }
    out.push_str("};\n");
}

fn header(isa: &Isa, t: &Template) -> Result<String, Box<dyn Error>> {
    let mut h = String::new();
    writeln!(
        h,
        "/* Generated by isa-tests/emit.rs for {}; rebuilt on every run. */",
        isa.triple
    )?;
    writeln!(h, "#define ISA_NAME \"{}\"", isa.name)?;
    // The arena keeps this many bytes after every copy mapped; the harness must do the same.
    writeln!(h, "#define READ_SLACK {}", READ_SLACK)?;
    writeln!(
        h,
        "#define TRAMP_CALL_RETURN_OFFSET {}",
        t.call_return_offset
    )?;
    let asm = t.disassembly.as_deref().unwrap_or("").replace("*/", "* /");
    writeln!(h, "/* Cranelift's disassembly of the template:\n{asm}*/")?;
    c_array(&mut h, "tramp_code", &t.code);

    let copies = copy_addresses(t.code.len());
    writeln!(h, "#define N_COPIES {}", copies.len())?;
    let addrs: Vec<String> = copies.iter().map(|(a, _)| format!("0x{a:x}UL")).collect();
    writeln!(
        h,
        "static const unsigned long copy_address[N_COPIES] = {{ {} }};",
        addrs.join(", ")
    )?;
    let whys: Vec<String> = copies.iter().map(|(_, why)| format!("\"{why}\"")).collect();
    writeln!(
        h,
        "static const char *const copy_where[N_COPIES] = {{ {} }};",
        whys.join(", ")
    )?;
    for (i, &(addr, _)) in copies.iter().enumerate() {
        c_array(&mut h, &format!("copy_eh_frame_{i}"), &eh_frame(t, addr)?);
    }
    let names: Vec<String> = (0..copies.len())
        .map(|i| format!("copy_eh_frame_{i}"))
        .collect();
    writeln!(
        h,
        "static const unsigned char *const copy_eh_frame[N_COPIES] = {{ {} }};",
        names.join(", ")
    )?;

    let patched: Vec<String> = isa
        .unlink
        .iter()
        .map(|p| format!("`{}` -> nop", p.asm))
        .collect();
    writeln!(h, "#define BROKEN_ADDRESS 0x{BROKEN_ADDRESS:x}UL")?;
    writeln!(
        h,
        "#define BROKEN_HOW \"template with {}\"",
        patched.join(", ")
    )?;
    c_array(&mut h, "broken_code", &broken_copy(isa, &t.code)?);
    Ok(h)
}

fn main() -> Result<(), Box<dyn Error>> {
    let out = env::args_os().nth(1).ok_or("usage: isa_emit <out-dir>")?;
    for isa in ISAS {
        let t = compile(&Target::parse(isa.triple)?, true)?;
        let dir = Path::new(&out).join(isa.name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("tramp.h"), header(isa, &t)?)?;
        println!(
            "{:8} {:2} bytes, call returns at +{}, .eh_frame for {} addresses",
            isa.name,
            t.code.len(),
            t.call_return_offset,
            copy_addresses(t.code.len()).len()
        );
    }
    Ok(())
}
