//! How trampolines are made: the strategy names users choose from, and the slot source each
//! one builds.

use std::str::FromStr;

use super::UnknownName;
use crate::arena::StampArena;
use crate::compile_error::CompileError;
#[cfg(feature = "compile")]
use crate::compiler::{self, Target};
#[cfg(feature = "compile")]
use crate::jit_each::CompileEach;
use crate::slots::SlotSource;

/// How trampolines are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Compile once, stamp copies into executable chunks (the default: no compile per code object).
    #[default]
    Stamp,
    /// One Cranelift function per code object through cranelift-jit (the simple baseline;
    /// builds with Cranelift only).
    #[cfg(feature = "compile")]
    CompileEach,
}

impl Strategy {
    /// The names [`Strategy::from_str`] accepts.
    #[cfg(feature = "compile")]
    pub const NAMES: &'static [&'static str] = &["stamp", "compile-each"];
    /// The names [`Strategy::from_str`] accepts.
    #[cfg(not(feature = "compile"))]
    pub const NAMES: &'static [&'static str] = &["stamp"];
}

impl FromStr for Strategy {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Strategy, UnknownName> {
        match s {
            "stamp" => Ok(Strategy::Stamp),
            #[cfg(feature = "compile")]
            "compile-each" => Ok(Strategy::CompileEach),
            _ => Err(UnknownName {
                what: "trampoline strategy",
                given: s.to_string(),
                accepted: Strategy::NAMES,
            }),
        }
    }
}

/// A slot source for the host: stamped copies of the template's `code` at least `min_stride`
/// apart within `budget` bytes (placed near the address `near` when it is not 0), or one
/// compiled function per slot.
pub fn source_for(
    strategy: Strategy,
    code: &[u8],
    min_stride: usize,
    budget: Option<usize>,
    near: usize,
) -> Result<Box<dyn SlotSource>, CompileError> {
    Ok(match strategy {
        Strategy::Stamp => {
            let arena = StampArena::new(code, min_stride).with_budget(budget);
            Box::new(if near != 0 { arena.near(near) } else { arena })
        }
        #[cfg(feature = "compile")]
        Strategy::CompileEach => Box::new(CompileEach::new()?),
    })
}

/// [`source_for`] with a freshly compiled host template and no stride or budget constraint.
#[cfg(feature = "compile")]
pub fn host_source(strategy: Strategy) -> Result<Box<dyn SlotSource>, CompileError> {
    source_for(
        strategy,
        &compiler::compile(&Target::Host, false)?.code,
        0,
        None,
        0,
    )
}
