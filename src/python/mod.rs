//! The `perf_trampoline._native` extension module: activate, deactivate, is_active.

mod capi;
mod children;
mod co_extra;
mod code_fields;
mod discover;
mod files;
mod flamegraph;
mod fork;
#[cfg(feature = "frame-walk")]
mod frame_walk;
mod hook;
mod hot;
mod inject;
mod profile;
mod stack_guard;
mod state;
mod unwind;

use pyo3::exceptions::{PyAttributeError, PyValueError};
use pyo3::prelude::*;

use crate::compose::backend::{self, Backends};
use crate::compose::{UnknownName, strategy::Strategy};

/// Executable memory for trampolines unless `activate(max_code_memory=...)` says otherwise:
/// 256 MiB is 16 million code objects in map mode (16 bytes each), 2.4 million with jitdump.
const DEFAULT_MAX_CODE_MEMORY: Option<usize> = Some(256 << 20);

/// Turns perf support on for this interpreter: every Python function called from now on runs
/// inside its own trampoline, named in the backend's output. Idempotent. The strategy and
/// the memory budget are fixed by the first activation; `None` means no budget.
///
/// `children`: `True` turns support on in every child process too (forked ones keep it;
/// ones started from now on get `PERF_TRAMPOLINE=<backend>` in their environment, which
/// turns it on at their start-up); `False` keeps it to this process (forked children turn it
/// off, and the switches that would turn it on are taken out of `os.environ`); `None` (the
/// default) changes nothing: forked children keep it, others get it only if the environment
/// already says so.
///
/// Raises ValueError while CPython's JIT is on and would make the backend's profile wrong
/// (3.14: every backend; 3.15: perf_jit), as `sys.activate_stack_trampoline()` does.
#[pyfunction]
#[pyo3(signature = (
    backend = "perf",
    *,
    strategy = "stamp",
    stack_on_cpython = false,
    persist_after_fork = true,
    max_code_memory = DEFAULT_MAX_CODE_MEMORY,
    children = None,
))]
fn activate(
    py: Python<'_>,
    backend: &str,
    strategy: &str,
    stack_on_cpython: bool,
    persist_after_fork: bool,
    max_code_memory: Option<usize>,
    children: Option<bool>,
) -> PyResult<()> {
    let backends = Backends::parse(backend).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let strategy: Strategy = strategy
        .parse()
        .map_err(|e: UnknownName| PyValueError::new_err(e.to_string()))?;
    #[cfg(feature = "compile")]
    if backends.jitdump && strategy == Strategy::CompileEach {
        return Err(PyValueError::new_err(
            "strategy \"compile-each\" cannot keep jitdump address ranges apart; use \"stamp\" with perf_jit",
        ));
    }
    if let Some(refusal) = jit_refusal(py, backend)? {
        return Err(PyValueError::new_err(refusal));
    }
    let request = state::Request {
        backends,
        backend_name: backend,
        strategy,
        stack_on_cpython,
        persist_after_fork,
        max_code_memory,
        children,
        hook: hook::eval_hook,
    };
    state::activate(py, &request)
}

/// Why CPython's JIT, running now, would make `backend`'s profile wrong, or None. jit.py
/// decides; it is imported only while the JIT runs (`sys._jit`, 3.14+), so that no start-up
/// pays for it.
fn jit_refusal(py: Python<'_>, backend: &str) -> PyResult<Option<String>> {
    if !jit_enabled(py)? {
        return Ok(None);
    }
    py.import("perf_trampoline.jit")?
        .call_method1("refusal_while_on", (backend,))?
        .extract()
}

/// `sys._jit.is_enabled()`: false where CPython has no JIT (before 3.14).
fn jit_enabled(py: Python<'_>) -> PyResult<bool> {
    let Ok(jit) = py.import("sys")?.getattr("_jit") else {
        return Ok(false);
    };
    jit.call_method0("is_enabled")?.is_truthy()
}

/// Whether CPython's JIT runs or may come on at start-up (3.14+ with `PYTHON_JIT` set): a
/// cheap superset of `jit.comes_on()`, so that the start-up switches and the runner import
/// jit.py (some 0.2 ms) only then. Here, not in Python: both have this module loaded already,
/// and neither need import more.
#[pyfunction]
fn _jit_may_run(py: Python<'_>) -> PyResult<bool> {
    Ok(jit_enabled(py)? || std::env::var_os("PYTHON_JIT").is_some_and(|v| !v.is_empty()))
}

/// Turns perf support off. Trampolines already on the stack stay valid and return normally.
#[pyfunction]
fn deactivate(py: Python<'_>) -> PyResult<()> {
    state::deactivate(py)
}

/// Whether calls currently go through trampolines.
#[pyfunction]
fn is_active() -> bool {
    hot::is_active()
}

/// Internal counters and paths, for tests and diagnostics.
#[pyfunction]
fn _state(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let s = state::snapshot();
    let d = pyo3::types::PyDict::new(py);
    d.set_item("slots_created", s.slots_created)?;
    d.set_item("outputs", s.outputs)?;
    d.set_item("hook_installed", s.hook_installed)?;
    d.set_item("code_memory", s.code_memory)?;
    d.set_item("extra_index", s.extra_index)?;
    d.set_item("names_by_offset", s.names_by_offset)?;
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(activate, m)?)?;
    m.add_function(wrap_pyfunction!(deactivate, m)?)?;
    m.add_function(wrap_pyfunction!(is_active, m)?)?;
    m.add_function(wrap_pyfunction!(_state, m)?)?;
    m.add_function(wrap_pyfunction!(_jit_may_run, m)?)?;
    fork::register_at_fork(m)?;
    m.add_function(wrap_pyfunction!(fork::_prepare_code, m)?)?;
    m.add_function(wrap_pyfunction!(files::output_dir, m)?)?;
    m.add_function(wrap_pyfunction!(files::output_path, m)?)?;
    m.add_function(wrap_pyfunction!(files::parse_output_name, m)?)?;
    #[cfg(feature = "frame-walk")]
    m.add_function(wrap_pyfunction!(frame_walk::_frame_pointer_walk, m)?)?;
    m.add("OUTPUT_DIR_VARIABLE", crate::registry::DIR_ENV)?;
    m.add("PERF_MAP_DIR", crate::registry::DEFAULT_DIR)?;
    m.add("BACKENDS", backend::NAMES.to_vec())?;
    m.add("STRATEGIES", Strategy::NAMES.to_vec())?;
    m.add_function(wrap_pyfunction!(tools_on_first_use, m)?)?;
    Ok(())
}

/// What [`tools_on_first_use`] puts into the module.
const TOOLS: [&str; 8] = [
    "flamegraph_svg",
    "unwind_perf_data",
    "unwind_perf_stream",
    "perf_data_has_user_stacks",
    "Samples",
    "PROFILE_FORMATS",
    "read_jitdump",
    "prepare_injection",
];

/// The tools of `perf-trampoline record/report/inject` (the unwinder, the samples model and
/// its formats, flame graphs, jitdump reading, injection), put into the module the first time
/// one is asked for, as its `__getattr__` (PEP 562): making them (a class among them) at module
/// creation cost every start-up with support about 60 µs, and start-up uses none of them.
#[pyfunction]
#[pyo3(name = "__getattr__", pass_module)]
fn tools_on_first_use<'py>(m: &Bound<'py, PyModule>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    // Only a tool's name makes them: the import system asks modules for `__path__` and more.
    if TOOLS.contains(&name) && !m.dict().contains(name)? {
        m.add_function(wrap_pyfunction!(flamegraph::flamegraph_svg, m)?)?;
        m.add_function(wrap_pyfunction!(unwind::unwind_perf_data, m)?)?;
        m.add_function(wrap_pyfunction!(unwind::unwind_perf_stream, m)?)?;
        m.add_function(wrap_pyfunction!(unwind::perf_data_has_user_stacks, m)?)?;
        m.add_class::<profile::Samples>()?;
        m.add("PROFILE_FORMATS", profile::FORMATS.to_vec())?;
        m.add_function(wrap_pyfunction!(files::read_jitdump, m)?)?;
        m.add_function(wrap_pyfunction!(inject::prepare_injection, m)?)?;
    }
    m.dict().get_item(name)?.ok_or_else(|| {
        PyAttributeError::new_err(format!(
            "module 'perf_trampoline._native' has no attribute '{name}'"
        ))
    })
}
