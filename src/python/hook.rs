//! The frame-evaluation hook: sends every Python call through its code object's trampoline.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::registry::{Registry, Symbol};
use crate::slots::SlotSource;
use crate::{EvalFn, Trampoline};

use super::capi::Api;

/// co_extra value meaning "this code object runs without a trampoline" (no slot could be
/// had for it); remembered so the failed attempt is not repeated on every call.
const NO_SLOT: usize = 1;

/// Everything the per-call path reads, set before the hook is installed and never torn:
/// each field is read with one relaxed load and written only with the GIL held.
struct Hot {
    /// Whether calls go through trampolines; when false the hook is a plain pass-through
    /// (it can stay installed under someone else's hook that chains to it).
    active: AtomicBool,
    /// The evaluator we call through to: CPython's default or the hook that was there before.
    target: AtomicUsize,
    code_offset: AtomicUsize,
    code_mask: AtomicUsize,
    code_type: AtomicUsize,
    get_extra: AtomicUsize,
    index: AtomicIsize,
}

static HOT: Hot = Hot {
    active: AtomicBool::new(false),
    target: AtomicUsize::new(0),
    code_offset: AtomicUsize::new(0),
    code_mask: AtomicUsize::new(!0),
    code_type: AtomicUsize::new(0),
    get_extra: AtomicUsize::new(0),
    index: AtomicIsize::new(-1),
};

/// Everything the slow path (a code object's first call) and activation change.
pub struct Cold {
    /// The host's trampoline, compiled at the first activation.
    pub template: Option<crate::compiler::Template>,
    /// Where new slots come from, and their stride. Slots stay cached in code objects across
    /// deactivation, so a source is never dropped: when a later activation needs a wider
    /// stride, the old source is leaked, never unmapped.
    pub source: Option<Box<dyn SlotSource>>,
    pub stride: usize,
    pub registry: Registry,
    /// The hook value we replaced, restored on deactivation (None = CPython's default).
    pub replaced: Option<EvalFn>,
    pub installed: bool,
    pub qualname_attr: &'static str,
    pub slots_created: u64,
    pub warned_no_slot: bool,
}

static COLD: Mutex<Cold> = Mutex::new(Cold {
    template: None,
    source: None,
    stride: 0,
    registry: Registry::empty(),
    replaced: None,
    installed: false,
    qualname_attr: "co_qualname",
    slots_created: 0,
    warned_no_slot: false,
});

pub fn cold() -> MutexGuard<'static, Cold> {
    // A panic while holding the lock leaves the state consistent enough to go on with.
    COLD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends every output (jitdump's CODE_CLOSE) when the process exits. Registered once.
pub fn close_outputs_at_exit() {
    static OWNER: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn at_exit() {
        // A forked child inherits this handler but not the files' ownership.
        if OWNER.load(Relaxed) != std::process::id() as usize {
            return;
        }
        // try_lock: a thread that died holding the lock must not hang the exit.
        if let Ok(mut c) = COLD.try_lock() {
            c.registry.close();
        }
    }
    if OWNER.swap(std::process::id() as usize, Relaxed) == 0 {
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe { libc::atexit(at_exit) };
    }
}

/// Publishes what the per-call path needs. Call with the GIL held, before installing the hook.
pub fn configure(api: &Api, layout: crate::frame_layout::FrameLayout, index: isize, target: EvalFn) {
    HOT.code_offset.store(layout.offset, Relaxed);
    HOT.code_mask.store(layout.mask, Relaxed);
    HOT.code_type.store(api.code_type as usize, Relaxed);
    HOT.get_extra.store(api.get_extra as usize, Relaxed);
    HOT.index.store(index, Relaxed);
    HOT.target.store(target as usize, Relaxed);
}

pub fn set_active(on: bool) {
    HOT.active.store(on, Relaxed);
}

pub fn is_active() -> bool {
    HOT.active.load(Relaxed)
}

/// The hook CPython calls for every frame it evaluates.
pub unsafe extern "C" fn eval_hook(ts: *mut c_void, frame: *mut c_void, throw: c_int) -> *mut c_void {
    // SAFETY: `target` was published (a valid EvalFn) before this hook was installed.
    let target: EvalFn = unsafe { std::mem::transmute::<usize, EvalFn>(HOT.target.load(Relaxed)) };
    if !HOT.active.load(Relaxed) {
        return unsafe { target(ts, frame, throw) };
    }
    // SAFETY: CPython hands us a live frame of the version `code_offset`/`code_mask` describe.
    let code = unsafe {
        let field = frame.cast::<u8>().add(HOT.code_offset.load(Relaxed)).cast::<usize>();
        (field.read() & HOT.code_mask.load(Relaxed)) as *mut PyObject
    };
    // SAFETY: a frame's code field always points at a live object (None in some 3.13+ frames).
    if code.is_null() || unsafe { (*code).ob_type } as usize != HOT.code_type.load(Relaxed) {
        return unsafe { target(ts, frame, throw) };
    }
    let get_extra: super::capi::GetExtraFn =
        unsafe { std::mem::transmute::<usize, _>(HOT.get_extra.load(Relaxed)) };
    let mut extra: *mut c_void = std::ptr::null_mut();
    // SAFETY: `code` is a code object and the index was handed to us by this interpreter.
    if unsafe { get_extra(code, HOT.index.load(Relaxed), &mut extra) } != 0 {
        return unsafe { target(ts, frame, throw) };
    }
    let mut slot = extra as usize;
    if slot == 0 {
        // SAFETY: we run with the GIL held and `code` is a live code object.
        slot = unsafe { slot_for_new_code(code) };
    }
    if slot == NO_SLOT {
        return unsafe { target(ts, frame, throw) };
    }
    // SAFETY: every non-sentinel co_extra value we store is a slot holding the trampoline.
    let tramp = unsafe { std::mem::transmute::<usize, Trampoline>(slot) };
    unsafe { tramp(ts, frame, throw, target) }
}

/// `py::<qualname>:<filename>`, exactly as CPython names its trampolines, as UTF-8 bytes
/// (characters that UTF-8 cannot hold, such as lone surrogates, are backslash-escaped).
fn code_name(code: &Bound<'_, PyAny>, qualname_attr: &str) -> Vec<u8> {
    fn part(code: &Bound<'_, PyAny>, attr: &str) -> Vec<u8> {
        code.getattr(attr)
            .and_then(|s| s.call_method1("encode", ("utf-8", "backslashreplace")))
            .and_then(|b| Ok(b.cast_into::<PyBytes>()?.as_bytes().to_vec()))
            .unwrap_or_else(|_| b"?".to_vec())
    }
    let mut name = b"py::".to_vec();
    name.extend(part(code, qualname_attr));
    name.push(b':');
    name.extend(part(code, "co_filename"));
    name
}

/// Gives `code` its own trampoline, records it, caches it in co_extra; returns the slot
/// address or NO_SLOT. Never leaves a Python exception behind, and keeps the one that may be
/// pending (a frame entered with `throwflag` carries the exception being thrown).
unsafe fn slot_for_new_code(code: *mut PyObject) -> usize {
    let (mut t, mut v, mut tb) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: the GIL is held (we are inside frame evaluation).
    unsafe { ffi::PyErr_Fetch(&mut t, &mut v, &mut tb) };
    let py = unsafe { Python::assume_attached() };
    let code_obj = unsafe { Bound::from_borrowed_ptr(py, code) };
    let qualname_attr = cold().qualname_attr;
    let name = code_name(&code_obj, qualname_attr);

    let (slot, messages) = {
        let mut c = cold();
        let c = &mut *c;
        let mut messages = Vec::new();
        let slot = match c.source.as_mut().map(|s| s.next_slot()) {
            Some(Ok(slot)) => {
                c.slots_created += 1;
                messages = c.registry.record(&Symbol { addr: slot.addr, size: slot.size, name: &name });
                slot.addr
            }
            Some(Err(e)) => {
                if !c.warned_no_slot {
                    c.warned_no_slot = true;
                    messages.push(e.to_string());
                }
                NO_SLOT
            }
            None => NO_SLOT,
        };
        (slot, messages)
    };
    for m in messages {
        super::warn(&m);
    }
    let set_extra = super::capi::api().map(|a| a.set_extra);
    if let Ok(set_extra) = set_extra
        && unsafe { set_extra(code, HOT.index.load(Relaxed), slot as *mut c_void) } != 0
    {
        unsafe { ffi::PyErr_Clear() };
    }
    unsafe { ffi::PyErr_Restore(t, v, tb) };
    slot
}
