//! perf-trampoline: makes Python functions visible to Linux `perf`.
//!
//! ```text
//! activate(backend) ─► compiler (Cranelift, once) ─► template {code, unwind info}
//!                                                       │
//! Python call ─► eval hook ─► code object ─► slot in co_extra? ── no: SlotSource::next_slot()
//!                                 │                                   Registry::record(slot, name)
//!                                 ▼                                     └─ perf map sink
//!                  trampoline(tstate, frame, throw, eval) ─► eval(tstate, frame, throw)
//! ```
//!
//! Every code object gets its own copy of one tiny call-through function at its own address,
//! so a stack walk through CPython shows one native frame per Python frame, and the perf map
//! tells perf the Python name of each address.

pub mod arena;
pub mod backend;
pub mod compiler;
pub mod frame_layout;
pub mod jit_each;
pub mod registry;
pub mod slots;
pub mod unwind;

#[cfg(feature = "perf-unwind")]
pub mod perfdata;

#[cfg(feature = "python")]
mod python;

use std::ffi::{c_int, c_void};

/// CPython's frame evaluator: `(tstate, frame, throwflag) -> PyObject*`.
pub type EvalFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> *mut c_void;

/// A trampoline: calls its last argument with the first three, inside its own frame.
pub type Trampoline = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int, EvalFn) -> *mut c_void;
