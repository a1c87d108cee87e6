//! Finds where code objects keep their (qualified) name and file name, so naming a new code
//! object takes two loads instead of two attribute lookups (~450 instructions together).
//!
//! As with co_extra, the fields move between CPython versions; rather than a table per
//! version, a probe code object with names no other field can hold is searched for them.

use pyo3::ffi::PyObject;
use pyo3::prelude::*;

/// Byte offsets of the name (`co_qualname` from 3.11, `co_name` before) and `co_filename`.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    pub name: usize,
    pub filename: usize,
}

/// The offsets, or None when the probe's fields could not be told apart (then names come
/// from getattr). Runs Python code (compile, getattr): call it at activation, never from the
/// hook.
pub fn discover<'py>(py: Python<'py>, name_attr: &str) -> PyResult<Option<Fields>> {
    // The inner function's qualified name differs from its plain name, and the file name
    // from both.
    let module = super::probe::compile(
        py,
        c"def _perf_trampoline_outer():\n    def _perf_trampoline_inner(): pass\n",
        c"<perf_trampoline fields probe>",
        super::probe::FILE,
    )?;
    let code_type = module.get_type();
    let is_code = |o: &Bound<'_, PyAny>| o.get_type().is(&code_type);
    let find_code = |holder: &Bound<'py, PyAny>| -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(holder
            .getattr("co_consts")?
            .try_iter()?
            .filter_map(Result::ok)
            .find(|c| is_code(c)))
    };
    let Some(outer) = find_code(&module)? else {
        return Ok(None);
    };
    let Some(inner) = find_code(&outer)? else {
        return Ok(None);
    };
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
