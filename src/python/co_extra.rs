//! Reads a code object's co_extra slot without a function call, at an offset found at run time.
//!
//! `PyUnstable_Code_GetExtra` costs a call and needs an out-parameter on the stack, which also
//! keeps the compiler from making the hook's call to the trampoline a tail call (so every
//! Python call would pay the hook's frame on the C stack). The field's place in
//! `PyCodeObject` differs between versions, so instead of a table we let CPython tell us:
//! set an extra on a fresh code object and see which field changed.

use std::ffi::c_void;

use pyo3::ffi::PyObject;
use pyo3::prelude::*;

use super::capi::Api;

/// `_PyCodeObjectExtra`: `{ Py_ssize_t ce_size; void *ce_extras[]; }`, the same in 3.9-3.15.
#[repr(C)]
struct Extras {
    size: isize,
    first: *mut c_void,
}

/// The offset of `co_extra` in code objects, or None if it could not be found (then callers
/// go through the API).
pub fn discover(py: Python<'_>, api: &Api, index: isize) -> Option<usize> {
    let code = api
        .new_code(py, c"<perf_trampoline probe>", c"_perf_trampoline_probe")
        .ok()?;
    let size: usize = code
        .get_type()
        .getattr("__basicsize__")
        .ok()?
        .extract()
        .ok()?;
    let words = size / std::mem::size_of::<usize>();
    let base = code.as_ptr().cast::<usize>();
    // SAFETY: `base` points at a live object of `size` bytes; we only read it.
    let before: Vec<usize> = (0..words).map(|i| unsafe { base.add(i).read() }).collect();
    let marker = 0x5eed_0000_0001usize as *mut c_void;
    // SAFETY: a fresh code object of this interpreter and its own index.
    if unsafe { (api.set_extra)(code.as_ptr(), index, marker) } != 0 {
        // SAFETY: GIL held; nothing else is pending here.
        unsafe { pyo3::ffi::PyErr_Clear() };
        return None;
    }
    // SAFETY: as above; the object is still alive (`code` holds it).
    let changed: Vec<usize> = (0..words)
        .filter(|&i| before[i] == 0 && unsafe { base.add(i).read() } != 0)
        .collect();
    let [word] = changed[..] else { return None };
    let offset = word * std::mem::size_of::<usize>();
    // SAFETY: the field that just became non-NULL is the co_extra CPython allocated.
    (unsafe { read(code.as_ptr(), offset, index) } == marker as usize).then_some(offset)
}

/// The extra at `index` of `code`, 0 if none.
///
/// # Safety
/// `code` must be a live code object and `offset` the one [`discover`] found.
#[inline(always)]
pub unsafe fn read(code: *mut PyObject, offset: usize, index: isize) -> usize {
    // SAFETY: per the contract, the field holds NULL or a valid `_PyCodeObjectExtra`.
    unsafe {
        let extras = code.cast::<u8>().add(offset).cast::<*const Extras>().read();
        if extras.is_null() || (*extras).size <= index {
            return 0;
        }
        (&raw const (*extras).first).add(index as usize).read() as usize
    }
}
