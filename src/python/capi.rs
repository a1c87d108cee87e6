//! The parts of CPython's C API the hook needs that are not in the stable ABI, found at run
//! time with `dlsym` so one extension build serves every CPython from 3.9 to 3.15.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use pyo3::ffi::{PyObject, PyTypeObject};

use crate::slots::EvalFn;

pub type GetEvalFn = unsafe extern "C" fn(*mut c_void) -> Option<EvalFn>;
pub type SetEvalFn = unsafe extern "C" fn(*mut c_void, Option<EvalFn>);
pub type RequestIndexFn = unsafe extern "C" fn(Option<unsafe extern "C" fn(*mut c_void)>) -> isize;
pub type GetExtraFn = unsafe extern "C" fn(*mut PyObject, isize, *mut *mut c_void) -> c_int;
pub type SetExtraFn = unsafe extern "C" fn(*mut PyObject, isize, *mut c_void) -> c_int;
pub type AsUtf8Fn = unsafe extern "C" fn(*mut PyObject, *mut isize) -> *const std::ffi::c_char;
pub type NewEmptyCodeFn =
    unsafe extern "C" fn(*const c_char, *const c_char, c_int) -> *mut PyObject;

/// Entry points into the running interpreter.
pub struct Api {
    pub get_eval: GetEvalFn,
    pub set_eval: SetEvalFn,
    pub default_eval: EvalFn,
    pub request_index: RequestIndexFn,
    pub get_extra: GetExtraFn,
    pub set_extra: SetExtraFn,
    /// `PyUnicode_AsUTF8AndSize`: in every version's ABI, but in the limited API only from
    /// 3.10, and this module is built for 3.9's.
    pub as_utf8: AsUtf8Fn,
    /// `PyCode_NewEmpty(filename, funcname, firstlineno)`: fresh code objects for the layout
    /// probes (co_extra, code_fields) without compiling any source.
    pub new_empty_code: NewEmptyCodeFn,
    pub code_type: *const PyTypeObject,
}

// SAFETY: plain function and static-object addresses, valid for the life of the process.
unsafe impl Send for Api {}
// SAFETY: as above; nothing in it changes after it is made.
unsafe impl Sync for Api {}

/// Looks up the first of `names` that the process exports (newer CPythons renamed some
/// functions to `PyUnstable_*` and kept the old names only as macros).
fn find(names: &[&CStr]) -> Result<*mut c_void, String> {
    for n in names {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other requirement.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, n.as_ptr()) };
        if !p.is_null() {
            return Ok(p);
        }
    }
    Err(format!(
        "this Python does not export {} (is libpython loaded with RTLD_LOCAL?)",
        names
            .iter()
            .map(|n| n.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}

fn load() -> Result<Api, String> {
    // SAFETY: each symbol has the C signature of the function type it is cast to, in every
    // CPython version that exports it under that name.
    unsafe {
        Ok(Api {
            get_eval: std::mem::transmute::<*mut c_void, GetEvalFn>(find(&[
                c"_PyInterpreterState_GetEvalFrameFunc",
            ])?),
            set_eval: std::mem::transmute::<*mut c_void, SetEvalFn>(find(&[
                c"_PyInterpreterState_SetEvalFrameFunc",
            ])?),
            default_eval: std::mem::transmute::<*mut c_void, EvalFn>(find(&[
                c"_PyEval_EvalFrameDefault",
            ])?),
            request_index: std::mem::transmute::<*mut c_void, RequestIndexFn>(find(&[
                c"PyUnstable_Eval_RequestCodeExtraIndex",
                c"_PyEval_RequestCodeExtraIndex",
            ])?),
            get_extra: std::mem::transmute::<*mut c_void, GetExtraFn>(find(&[
                c"PyUnstable_Code_GetExtra",
                c"_PyCode_GetExtra",
            ])?),
            set_extra: std::mem::transmute::<*mut c_void, SetExtraFn>(find(&[
                c"PyUnstable_Code_SetExtra",
                c"_PyCode_SetExtra",
            ])?),
            as_utf8: std::mem::transmute::<*mut c_void, AsUtf8Fn>(find(&[
                c"PyUnicode_AsUTF8AndSize",
            ])?),
            new_empty_code: std::mem::transmute::<*mut c_void, NewEmptyCodeFn>(find(&[
                c"PyCode_NewEmpty",
            ])?),
            code_type: find(&[c"PyCode_Type"])?.cast(),
        })
    }
}

/// The API of the running interpreter, looked up once.
pub fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

impl Api {
    /// A new, empty code object named `name` in file `filename` (no source compiled: the
    /// compiler cost activation some 170,000 instructions).
    pub fn new_code<'py>(
        &self,
        py: pyo3::Python<'py>,
        filename: &CStr,
        name: &CStr,
    ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
        // SAFETY: two NUL-terminated strings; the GIL is held (we have `py`).
        unsafe {
            pyo3::Bound::from_owned_ptr_or_err(
                py,
                (self.new_empty_code)(filename.as_ptr(), name.as_ptr(), 1),
            )
        }
    }
}
