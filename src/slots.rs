//! Where trampoline addresses come from: the `SlotSource` trait, its slots and its errors.
//! The two sources are `arena.rs` and `jit_each.rs`; `compose/strategy.rs` picks one.

use std::ffi::{c_int, c_void};
use std::fmt;
use std::io;

use crate::compile_error::CompileError;

/// CPython's frame evaluator: `(tstate, frame, throwflag) -> PyObject*`.
pub type EvalFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> *mut c_void;

/// A trampoline: calls its last argument with the first three, inside its own frame.
pub type Trampoline = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int, EvalFn) -> *mut c_void;

/// One trampoline: `size` bytes of code at `addr`, owned by one code object for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Where the trampoline starts.
    pub addr: usize,
    /// Bytes of code there.
    pub size: usize,
}

impl Slot {
    /// The slot as the trampoline function it is.
    ///
    /// # Safety
    /// `self` must come from a [`SlotSource`] whose code is the template of
    /// [`crate::compiler::build_function`] for the host.
    pub unsafe fn as_fn(self) -> Trampoline {
        // SAFETY: per the contract above the address holds that function.
        unsafe { std::mem::transmute::<usize, Trampoline>(self.addr) }
    }
}

/// Why no slot could be had.
#[derive(Debug)]
pub enum SlotError {
    /// The configured budget of executable memory is used up.
    Exhausted {
        /// The budget, in bytes.
        budget: usize,
    },
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

impl std::error::Error for SlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SlotError::Exhausted { .. } => None,
            SlotError::Os(e) => Some(e),
            SlotError::Compile(e) => Some(e),
        }
    }
}

/// Hands out trampoline addresses, each exactly once.
pub trait SlotSource: Send {
    /// The next slot, never handed out before.
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
