//! What differs between the ISAs we build trampolines for, in one place: their names, ELF
//! machine numbers, how slots are aligned and what fills the gaps between them.

use target_lexicon::Architecture;

/// An instruction set we build trampolines for (Linux on each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64.
    X86_64,
    /// AArch64 (ARM64).
    Aarch64,
    /// RISC-V 64 (RV64GC).
    Riscv64,
    /// IBM Z (big-endian).
    S390x,
}

/// Where copies of a template start: a multiple of this, which is well aligned for code on
/// every ISA we support (x86-64 fetches in 16-byte blocks; the others want 4 or 2).
pub const SLOT_ALIGN: usize = 16;

impl Isa {
    /// Every supported ISA.
    pub const ALL: [Isa; 4] = [Isa::X86_64, Isa::Aarch64, Isa::Riscv64, Isa::S390x];

    /// The ISA of a target triple's architecture, if we support it.
    pub fn of(arch: Architecture) -> Option<Isa> {
        Some(match arch {
            Architecture::X86_64 => Isa::X86_64,
            Architecture::Aarch64(_) => Isa::Aarch64,
            Architecture::Riscv64(_) => Isa::Riscv64,
            Architecture::S390x => Isa::S390x,
            _ => return None,
        })
    }

    /// The machine this code runs on, if we support it.
    pub fn host() -> Option<Isa> {
        Isa::of(target_lexicon::HOST.architecture)
    }

    /// The architecture as Linux target triples spell it.
    pub fn triple_name(self) -> &'static str {
        match self {
            Isa::X86_64 => "x86_64",
            Isa::Aarch64 => "aarch64",
            Isa::Riscv64 => "riscv64gc",
            Isa::S390x => "s390x",
        }
    }

    /// The ELF machine number (`e_machine`), which perf expects in a jitdump's header.
    pub fn elf_machine(self) -> u32 {
        match self {
            Isa::X86_64 => 62,
            Isa::Aarch64 => 183,
            Isa::Riscv64 => 243,
            Isa::S390x => 22,
        }
    }

    /// The byte that fills the gaps between copies: a trap on x86 (`int3`); on the others
    /// zero, which each of them decodes as an illegal instruction.
    pub fn filler_byte(self) -> u8 {
        match self {
            Isa::X86_64 => 0xcc,
            Isa::Aarch64 | Isa::Riscv64 | Isa::S390x => 0,
        }
    }
}
