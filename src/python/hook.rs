//! The frame-evaluation hook: sends every Python call through its code object's trampoline.

use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering::Relaxed;

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::hot::HOT;
use super::{capi, co_extra, code_fields, discover, stack_guard, state};
use crate::slots::{EvalFn, Trampoline};

/// co_extra value meaning "this code object runs without a trampoline" (no slot could be
/// had for it); remembered so the failed attempt is not repeated on every call.
const NO_SLOT: usize = 1;

/// The hook CPython calls for every frame it evaluates.
///
/// # Safety
/// Only CPython calls it, as a PEP 523 frame evaluator, with the GIL held, after
/// [`super::hot::publish`] described this interpreter.
pub unsafe extern "C" fn eval_hook(
    ts: *mut c_void,
    frame: *mut c_void,
    throw: c_int,
) -> *mut c_void {
    // SAFETY: `target` was published (a valid EvalFn) before this hook was installed.
    let target: EvalFn = unsafe { std::mem::transmute::<usize, EvalFn>(HOT.target.load(Relaxed)) };
    if HOT.guard_stack.load(Relaxed) && stack_guard::near_the_end(ts) {
        // Evaluating the frame in "throw" mode (as gen.throw() does) makes CPython unwind it
        // with the exception set, cleaning it up as for any exception raised inside it.
        // SAFETY: the GIL is held; `target` is the evaluator and gets CPython's own arguments.
        unsafe {
            ffi::PyErr_SetString(
                ffi::PyExc_RecursionError,
                c"maximum recursion depth exceeded (C stack nearly exhausted)".as_ptr(),
            );
            return target(ts, frame, 1);
        }
    }
    if !HOT.active.load(Relaxed) {
        // SAFETY: the evaluator we replaced, with the arguments CPython gave us.
        return unsafe { target(ts, frame, throw) };
    }
    // SAFETY: CPython hands us a live frame of the version `code_offset`/`code_mask` describe.
    let code = unsafe {
        let field = frame
            .cast::<u8>()
            .add(HOT.code_offset.load(Relaxed))
            .cast::<usize>();
        (field.read() & HOT.code_mask.load(Relaxed)) as *mut PyObject
    };
    // SAFETY: a frame's code field always points at a live object (None in some 3.13+ frames).
    if code.is_null() || unsafe { (*code).ob_type } as usize != HOT.code_type.load(Relaxed) {
        // SAFETY: as above.
        return unsafe { target(ts, frame, throw) };
    }
    let offset = HOT.extra_offset.load(Relaxed);
    let mut slot = if offset != 0 {
        // SAFETY: `code` is a code object; the offset was found on this interpreter.
        unsafe { co_extra::read(code, offset, HOT.index.load(Relaxed)) }
    } else {
        // SAFETY: as above; the slower, always-available way.
        unsafe { extra_via_api(code) }
    };
    if slot == 0 {
        // SAFETY: we run with the GIL held and `code` is a live code object.
        let pending = if throw == 0 {
            Pending::No
        } else {
            Pending::Maybe
        };
        // SAFETY: as just said.
        slot = unsafe { slot_for_new_code(code, pending) };
    }
    if slot == NO_SLOT {
        // SAFETY: as above.
        return unsafe { target(ts, frame, throw) };
    }
    // SAFETY: every non-sentinel co_extra value we store is a slot holding the trampoline.
    let tramp = unsafe { std::mem::transmute::<usize, Trampoline>(slot) };
    // A tail call in release builds: the trampoline's frame takes the place of ours.
    // SAFETY: the trampoline calls `target` with the arguments CPython gave us.
    unsafe { tramp(ts, frame, throw, target) }
}

/// The extra of `code` at our index through CPython's API (0 if none or on error).
///
/// # Safety
/// The GIL must be held, `code` must be a live code object, and the hook published.
#[cold]
#[inline(never)]
unsafe fn extra_via_api(code: *mut PyObject) -> usize {
    // SAFETY: `get_extra` was published as `PyUnstable_Code_GetExtra`'s address.
    let get_extra: capi::GetExtraFn =
        unsafe { std::mem::transmute::<usize, _>(HOT.get_extra.load(Relaxed)) };
    let mut extra: *mut c_void = std::ptr::null_mut();
    // SAFETY: `code` is a code object and the index was handed to us by this interpreter.
    if unsafe { get_extra(code, HOT.index.load(Relaxed), &mut extra) } != 0 {
        // SAFETY: the GIL is held.
        unsafe { ffi::PyErr_Clear() };
        return NO_SLOT;
    }
    extra as usize
}

/// A name as it is built: on the stack, as nearly every name fits (a heap buffer per new
/// code object was ~130 instructions of its first call).
type NameBuf = smallvec::SmallVec<[u8; 256]>;

/// `py::<qualname>:<filename>`, exactly as CPython names its trampolines, as UTF-8 bytes
/// (characters that UTF-8 cannot hold, such as lone surrogates, are backslash-escaped).
fn code_name(py: Python<'_>, code: *mut PyObject, name: &mut NameBuf) {
    let looked_up: [Option<Bound<'_, PyAny>>; 2];
    let found = discover::found();
    let [qualname, filename] = match found.and_then(|d| d.fields) {
        // SAFETY: `code` is a live code object; the fields hold strings it owns, alive while
        // we copy them (borrowed: no reference counting).
        Some(fields) => [fields.name, fields.filename]
            .map(|offset| Some(unsafe { Borrowed::from_ptr(py, code_fields::read(code, offset)) })),
        None => {
            // SAFETY: `code` is a live code object.
            let code = unsafe { Borrowed::from_ptr(py, code) };
            let qualname = if found.is_none_or(|d| d.has_qualname) {
                pyo3::intern!(py, "co_qualname")
            } else {
                pyo3::intern!(py, "co_name")
            };
            looked_up =
                [qualname, pyo3::intern!(py, "co_filename")].map(|attr| code.getattr(attr).ok());
            looked_up
                .each_ref()
                .map(|text| text.as_ref().map(Bound::as_borrowed))
        }
    };
    name.extend_from_slice(b"py::");
    push_utf8(name, qualname);
    name.push(b':');
    push_utf8(name, filename);
}

/// Appends the UTF-8 of the str `text`: its own cached UTF-8, so nothing is allocated unless
/// it holds a lone surrogate (then the encode fallback spells it out with backslashes); `?`
/// when there is no text.
fn push_utf8(name: &mut NameBuf, text: Option<Borrowed<'_, '_, PyAny>>) {
    let Some(text) = text else {
        return name.push(b'?');
    };
    if let Ok(api) = capi::api() {
        let mut len: isize = 0;
        // SAFETY: `text` is alive while we copy; the GIL is held.
        let p = unsafe { (api.as_utf8)(text.as_ptr(), &mut len) };
        if !p.is_null() {
            // SAFETY: CPython returns `len` bytes of UTF-8 owned by `text`.
            return name.extend_from_slice(unsafe {
                std::slice::from_raw_parts(p.cast::<u8>(), len as usize)
            });
        }
        // SAFETY: the GIL is held.
        unsafe { ffi::PyErr_Clear() };
    }
    match text
        .call_method1("encode", ("utf-8", "backslashreplace"))
        .and_then(|b| Ok(b.cast_into::<PyBytes>()?.as_bytes().to_vec()))
    {
        Ok(bytes) => name.extend_from_slice(&bytes),
        Err(_) => name.push(b'?'),
    }
}

/// Gives `code` a trampoline now unless it has one (for code that will run in forked
/// children: they then inherit it instead of each writing their own). Returns whether it has
/// one afterwards.
///
/// # Safety
/// The GIL must be held and `code` must be a live code object; the hook must be configured.
pub unsafe fn ensure_slot(code: *mut PyObject) -> bool {
    // SAFETY: the caller's contract is both functions' contract.
    let extra = unsafe { extra_via_api(code) };
    let slot = if extra == 0 {
        // SAFETY: as above.
        unsafe { slot_for_new_code(code, Pending::Maybe) }
    } else {
        extra
    };
    slot != NO_SLOT
}

/// Whether a Python exception may be set when a trampoline is made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// CPython never evaluates a frame with an exception set unless it throws one into it
    /// (its evaluator asserts so), so the hook knows from `throwflag`.
    No,
    /// One may be set: it is kept aside and restored.
    Maybe,
}

/// Gives `code` its own trampoline, records it, caches it in co_extra; returns the slot
/// address or NO_SLOT. Never leaves a Python exception behind, and keeps the one that may be
/// pending (a frame entered with `throwflag` carries the exception being thrown). Out of line
/// so the hook's own frame, paid by every Python call, stays small.
///
/// # Safety
/// The GIL must be held, `code` must be a live code object, and the hook published.
#[cold]
#[inline(never)]
unsafe fn slot_for_new_code(code: *mut PyObject, pending: Pending) -> usize {
    let (mut t, mut v, mut tb) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    if pending == Pending::Maybe {
        // SAFETY: the GIL is held (we are inside frame evaluation).
        unsafe { ffi::PyErr_Fetch(&mut t, &mut v, &mut tb) };
    }
    // SAFETY: the GIL is held.
    let py = unsafe { Python::assume_attached() };
    let mut name = NameBuf::new();
    code_name(py, code, &mut name);

    let (slot, messages) = state::new_slot(&name);
    messages.print();
    let slot = slot.unwrap_or(NO_SLOT);
    let set_extra = capi::api().map(|a| a.set_extra);
    if let Ok(set_extra) = set_extra
        // SAFETY: `code` is a live code object and the index is this interpreter's.
        && unsafe { set_extra(code, HOT.index.load(Relaxed), slot as *mut c_void) } != 0
    {
        // SAFETY: the GIL is held.
        unsafe { ffi::PyErr_Clear() };
    }
    if pending == Pending::Maybe {
        // SAFETY: the GIL is held; these are what PyErr_Fetch handed us, given back once.
        unsafe { ffi::PyErr_Restore(t, v, tb) };
    }
    slot
}
