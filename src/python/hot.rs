//! What the eval hook's per-call path reads: published before the hook is installed, each
//! value one relaxed atomic load away.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

use super::discover::Discovered;
use crate::slots::EvalFn;

/// Everything the per-call path reads, set before the hook is installed and never torn:
/// each field is read with one relaxed load and written only with the GIL held.
pub struct Hot {
    /// Whether calls go through trampolines; when false the hook is a plain pass-through
    /// (it can stay installed under someone else's hook that chains to it).
    pub active: AtomicBool,
    /// The evaluator we call through to: CPython's default or the hook that was there before.
    pub target: AtomicUsize,
    /// Where a frame keeps its code object, and the bits of that field that are the pointer.
    pub code_offset: AtomicUsize,
    pub code_mask: AtomicUsize,
    /// `PyCode_Type`: frames of other executables (3.13+) run without a trampoline.
    pub code_type: AtomicUsize,
    /// `PyUnstable_Code_GetExtra`, for when the co_extra offset is unknown.
    pub get_extra: AtomicUsize,
    /// Where co_extra sits in a code object (0: unknown, use `get_extra`).
    pub extra_offset: AtomicUsize,
    /// Our co_extra index (-1 before the first activation).
    pub index: AtomicIsize,
    /// Whether the hook checks the C stack itself (see stack_guard.rs).
    pub guard_stack: AtomicBool,
}

/// The one copy the hook reads.
pub static HOT: Hot = Hot {
    active: AtomicBool::new(false),
    target: AtomicUsize::new(0),
    code_offset: AtomicUsize::new(0),
    code_mask: AtomicUsize::new(!0),
    code_type: AtomicUsize::new(0),
    get_extra: AtomicUsize::new(0),
    extra_offset: AtomicUsize::new(0),
    index: AtomicIsize::new(-1),
    guard_stack: AtomicBool::new(false),
};

/// Publishes what the per-call path needs, calling through to `target`. Call with the GIL
/// held, before installing the hook.
pub fn publish(found: &Discovered, target: EvalFn) {
    HOT.guard_stack.store(found.guard_stack, Relaxed);
    HOT.extra_offset
        .store(found.extra_offset.unwrap_or(0), Relaxed);
    HOT.code_offset.store(found.layout.offset, Relaxed);
    HOT.code_mask.store(found.layout.mask, Relaxed);
    HOT.code_type.store(found.api.code_type as usize, Relaxed);
    HOT.get_extra.store(found.api.get_extra as usize, Relaxed);
    HOT.index.store(found.index, Relaxed);
    HOT.target.store(target as usize, Relaxed);
}

/// Turns the per-call path on (calls go through trampolines) or off (a pass-through).
pub fn set_active(on: bool) {
    HOT.active.store(on, Relaxed);
}

/// Whether calls go through trampolines.
pub fn is_active() -> bool {
    HOT.active.load(Relaxed)
}

/// The co_extra index the hook uses (-1 before the first activation).
pub fn extra_index() -> isize {
    HOT.index.load(Relaxed)
}
