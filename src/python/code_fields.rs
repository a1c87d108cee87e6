//! Finds where code objects keep their (qualified) name and file name, so naming a new code
//! object takes two loads instead of two attribute lookups (~450 instructions together).
//!
//! As with co_extra, the fields move between CPython versions; rather than a table per
//! version, a probe code object with names no other field can hold is searched for them.

use pyo3::ffi::PyObject;
use pyo3::prelude::*;

use super::capi::Api;

/// Byte offsets of the name (`co_qualname` from 3.11, `co_name` before) and `co_filename`.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    pub name: usize,
    pub filename: usize,
}

/// The offsets, or None when the probe's fields could not be told apart (then names come
/// from getattr). Runs Python code (`code.replace`, getattr): call it at activation, never from
/// the hook.
pub fn discover<'py>(py: Python<'py>, api: &Api, name_attr: &str) -> PyResult<Option<Fields>> {
    // The probe's qualified name differs from its plain name (`replace` gives it one from
    // 3.11 on, where `name_attr` is co_qualname), and the file name from both.
    let file = c"<perf_trampoline fields probe>";
    let mut inner = api.new_code(py, file, c"_perf_trampoline_inner")?;
    if name_attr != "co_name" {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item(
            name_attr,
            "_perf_trampoline_outer.<locals>._perf_trampoline_inner",
        )?;
        inner = inner.call_method("replace", (), Some(&kwargs))?;
    }
    let outer = api.new_code(py, file, c"_perf_trampoline_outer")?;
    let code_type = inner.get_type();
    let size: usize = code_type.getattr("__basicsize__")?.extract()?;
    let offset_of = |attr: &str| -> PyResult<Option<usize>> {
        let wanted = inner.getattr(attr)?.as_ptr() as usize;
        let base = inner.as_ptr().cast::<usize>();
        // SAFETY: `base` points at a live object of `size` bytes; we only read it.
        let hits: Vec<usize> = (0..size / size_of::<usize>())
            .filter(|&i| unsafe { base.add(i).read() } == wanted)
            .collect();
        Ok(match hits[..] {
            [i] => Some(i * size_of::<usize>()),
            _ => None,
        })
    };
    let (Some(name), Some(filename)) = (offset_of(name_attr)?, offset_of("co_filename")?) else {
        return Ok(None);
    };
    let fields = Fields { name, filename };
    // A second code object must agree, or the offsets are a coincidence.
    // SAFETY: `outer` is a live code object of the same type.
    let agrees = unsafe { read(outer.as_ptr(), fields.name) } == outer.getattr(name_attr)?.as_ptr()
        && unsafe { read(outer.as_ptr(), fields.filename) }
            == outer.getattr("co_filename")?.as_ptr();
    Ok(agrees.then_some(fields))
}

/// The object pointer stored at `offset` in `code` (borrowed).
///
/// # Safety
/// `code` must be a live code object and `offset` one that [`discover`] returned.
pub unsafe fn read(code: *mut PyObject, offset: usize) -> *mut PyObject {
    // SAFETY: per the contract, a pointer-sized field lies at `offset` in the live object.
    unsafe { code.cast::<u8>().add(offset).cast::<*mut PyObject>().read() }
}
