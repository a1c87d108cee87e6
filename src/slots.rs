//! Where trampoline addresses come from: the `SlotSource` trait and the two strategies.

use std::fmt;
use std::io;
use std::str::FromStr;

use crate::compiler::{self, CompileError, Target, Template};

/// One trampoline: `size` bytes of code at `addr`, owned by one code object for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub addr: usize,
    pub size: usize,
}

impl Slot {
    /// The slot as the trampoline function it is.
    ///
    /// # Safety
    /// `self` must come from a [`SlotSource`] whose code is the template of
    /// [`compiler::build_function`] for the host.
    pub unsafe fn as_fn(self) -> crate::Trampoline {
        // SAFETY: per the contract above the address holds that function.
        unsafe { std::mem::transmute::<usize, crate::Trampoline>(self.addr) }
    }
}

/// Why no slot could be had.
#[derive(Debug)]
pub enum SlotError {
    /// The configured budget of executable memory is used up.
    Exhausted { budget: usize },
    /// The kernel refused memory or a protection change.
    Os(io::Error),
    /// Compiling a per-code-object function failed.
    Compile(CompileError),
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Exhausted { budget } => write!(
                f,
                "trampoline memory budget of {budget} bytes is used up; new code runs without a trampoline"
            ),
            SlotError::Os(e) => write!(f, "cannot map executable memory for trampolines: {e}"),
            SlotError::Compile(e) => write!(f, "cannot compile a trampoline: {e}"),
        }
    }
}

impl std::error::Error for SlotError {}

/// Hands out trampoline addresses, each exactly once.
pub trait SlotSource: Send {
    fn next_slot(&mut self) -> Result<Slot, SlotError>;
    /// Called in a forked child before its first slot: from then on slots must come from
    /// executable memory the child itself made executable. perf copies the parent's memory
    /// map into the child at fork, so an address in memory mapped before the fork keeps the
    /// parent's `/tmp/perf-<parent>.map` as its symbol source in the child, and a slot the
    /// child hands out there would be named by whatever the parent puts at that address.
    fn after_fork(&mut self);
    /// Executable memory taken so far, in bytes (for budgets and reports).
    fn memory_bytes(&self) -> usize;
}

/// How trampolines are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Compile once, stamp copies into executable chunks (the default: no compile per code object).
    #[default]
    Stamp,
    /// One Cranelift function per code object through cranelift-jit (the simple baseline).
    CompileEach,
}

impl Strategy {
    pub const NAMES: &'static [&'static str] = &["stamp", "compile-each"];
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Strategy, String> {
        match s {
            "stamp" => Ok(Strategy::Stamp),
            "compile-each" => Ok(Strategy::CompileEach),
            _ => Err(format!(
                "unknown trampoline strategy {s:?}; accepted: {}",
                Strategy::NAMES.join(", ")
            )),
        }
    }
}

/// A slot source for the host: stamped copies of `template` at least `min_stride` apart
/// within `budget` bytes (placed near the address `near` when it is not 0), or one compiled
/// function per slot.
pub fn source_for(
    strategy: Strategy,
    template: &Template,
    min_stride: usize,
    budget: Option<usize>,
    near: usize,
) -> Result<Box<dyn SlotSource>, CompileError> {
    Ok(match strategy {
        Strategy::Stamp => {
            let arena = crate::arena::StampArena::new(&template.code, min_stride).with_budget(budget);
            Box::new(if near != 0 { arena.near(near) } else { arena })
        }
        Strategy::CompileEach => Box::new(crate::jit_each::CompileEach::new()?),
    })
}

/// [`source_for`] with a freshly compiled host template and no stride or budget constraint.
pub fn host_source(strategy: Strategy) -> Result<Box<dyn SlotSource>, CompileError> {
    source_for(strategy, &compiler::compile(&Target::Host, false)?, 0, None, 0)
}
