//! The `perf_trampoline._native` extension module: activate, deactivate, is_active.

mod capi;
mod children;
mod co_extra;
mod code_fields;
mod flamegraph;
mod fork;
mod hook;
mod probe;
mod stack_guard;
mod unwind;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::EvalFn;
use crate::backend::{self, Backends};
use crate::compiler::{self, Target};
use crate::frame_layout;
use crate::registry::{self, Writers};
use crate::slots::{self, Strategy};

/// Prints one warning line to stderr. Used from inside the eval hook, where running
/// Python code (the `warnings` module) could re-enter the hook.
pub(crate) fn warn(msg: &str) {
    eprintln!("perf_trampoline: warning: {msg}");
}

/// The co_extra index: one per interpreter for the life of the process (indices are a
/// limited resource that CPython never hands back; PyO3 modules load in one interpreter only).
fn extra_index(api: &capi::Api) -> PyResult<isize> {
    static INDEX: std::sync::OnceLock<isize> = std::sync::OnceLock::new();
    if let Some(i) = INDEX.get() {
        return Ok(*i);
    }
    // SAFETY: called with the GIL held; no free function is needed (slots are never reused).
    let i = unsafe { (api.request_index)(None) };
    if i < 0 {
        return Err(PyRuntimeError::new_err(
            "no co_extra index left in this interpreter (CPython allows 255)",
        ));
    }
    Ok(*INDEX.get_or_init(|| i))
}

fn cpython_own_trampoline_active(py: Python<'_>) -> bool {
    py.import("sys")
        .and_then(|sys| sys.getattr("is_stack_trampoline_active"))
        .and_then(|f| f.call0())
        .and_then(|r| r.is_truthy())
        .unwrap_or(false)
}

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
    let strategy: Strategy = strategy.parse().map_err(PyValueError::new_err)?;
    let v = py.version_info();
    let (major, minor) = (v.major, v.minor);
    let layout = frame_layout::layout_for(major, minor).ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "CPython {major}.{minor} is not supported; perf_trampoline supports {}",
            frame_layout::SUPPORTED
        ))
    })?;
    let api = capi::api().map_err(PyRuntimeError::new_err)?;
    if !stack_on_cpython && !hook::cold().installed && cpython_own_trampoline_active(py) {
        return Err(PyRuntimeError::new_err(
            "CPython's own perf trampoline is active (-X perf / PYTHONPERFSUPPORT): turn it off \
             with sys.deactivate_stack_trampoline(), or pass stack_on_cpython=True to run ours \
             on top of it (each function then appears twice in profiles)",
        ));
    }
    let index = extra_index(api)?;
    // Found once, before taking the lock: finding it makes Python objects.
    static EXTRA_OFFSET: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let extra_offset = *EXTRA_OFFSET.get_or_init(|| co_extra::discover(py, api, index));
    code_fields::discover_once(py, if minor >= 11 { "co_qualname" } else { "co_name" });

    let mut guard = hook::cold();
    let cold = &mut *guard;
    let runtime_err = |e: compiler::CompileError| PyRuntimeError::new_err(e.to_string());
    if cold.template.is_none() {
        cold.template = Some(compiler::compile(&Target::Host, false).map_err(runtime_err)?);
    }
    // A forked child activating again: first move what it inherited to files of its own.
    for m in fork::own_outputs(cold) {
        warn(&m);
    }
    let template = cold.template.as_ref().expect("compiled above");
    let stride = backends.min_stride(template).map_err(runtime_err)?;
    if backends.jitdump && strategy == Strategy::CompileEach {
        return Err(PyValueError::new_err(
            "strategy \"compile-each\" cannot keep jitdump address ranges apart; use \"stamp\" with perf_jit",
        ));
    }
    if stack_on_cpython {
        // From now on CPython's trampoline may write into our files too (now or later).
        cold.writers = Writers::WithCpython;
    }
    // Open the outputs before touching the hook, so a bad directory fails cleanly.
    let pid = std::process::id();
    let writers = cold.writers;
    cold.registry
        .select(&backends.outputs(&registry::output_dir(), pid), |kind, path| {
            backend::open_sink(kind, path, pid, template, writers)
        })
        .map_err(|e| {
            // OSError(errno, text, path) becomes PermissionError, FileNotFoundError, ...
            let reason = e.error.to_string();
            let reason = reason.split(" (os error").next().unwrap_or(&reason);
            let text = format!("cannot open the {} for writing: {reason}", e.kind);
            let errno = e.error.raw_os_error().unwrap_or(match e.error.kind() {
                std::io::ErrorKind::PermissionDenied => libc::EACCES,
                std::io::ErrorKind::NotFound => libc::ENOENT,
                _ => libc::EIO,
            });
            PyOSError::new_err((errno, text, e.path.clone()))
        })?;
    if cold.source.is_none() || cold.stride < stride {
        let near = api.default_eval as usize;
        let source = slots::source_for(strategy, template, stride, max_code_memory, near).map_err(runtime_err)?;
        // Code objects keep pointing into the old source: it must never be unmapped.
        std::mem::forget(cold.source.replace(source));
        cold.stride = stride;
    }
    cold.persist_after_fork = persist_after_fork;
    if let Some(children) = children {
        cold.forks_keep_support = children;
    }

    if !cold.installed {
        // SAFETY: GIL held; the interpreter pointer is this thread's own.
        let interp = unsafe { pyo3::ffi::PyInterpreterState_Get() }.cast();
        let current = unsafe { (api.get_eval)(interp) };
        // On 3.9/3.10 the default evaluator is stored explicitly, from 3.11 it is NULL; any
        // other value is someone else's hook, which we call through to rather than bypass.
        hook::configure(api, layout, index, extra_offset, current.unwrap_or(api.default_eval), minor < 12, minor >= 11);
        cold.replaced = current;
        cold.installed = true;
        unsafe { (api.set_eval)(interp, Some(hook::eval_hook)) };
    }
    fork::count_forks();
    hook::close_outputs_at_exit();
    // os.environ's methods run before support goes on: the program's own code is the first
    // to get trampolines.
    drop(guard);
    children::pass_on(py, children, backend)?;
    // Unless a deactivate() from another thread came in between (it holds the lock too).
    let cold = hook::cold();
    if cold.installed {
        hook::set_active(true);
    }
    Ok(())
}

/// Turns perf support off. Trampolines already on the stack stay valid and return normally.
#[pyfunction]
fn deactivate(py: Python<'_>) -> PyResult<()> {
    let api = capi::api().map_err(PyRuntimeError::new_err)?;
    let mut cold = hook::cold();
    hook::set_active(false);
    if !cold.installed {
        return Ok(());
    }
    let interp = unsafe { pyo3::ffi::PyInterpreterState_Get() }.cast();
    let current = unsafe { (api.get_eval)(interp) };
    if current.map(|f| f as usize) == Some(hook::eval_hook as EvalFn as usize) {
        unsafe { (api.set_eval)(interp, cold.replaced) };
        cold.installed = false;
    } else {
        // Someone installed a hook on top of ours and calls through to it: unhooking would
        // cut them off, so ours stays in their chain as a plain pass-through.
        drop(cold);
        let warnings = py.import("warnings")?;
        warnings.call_method1(
            "warn",
            ("another frame-evaluation hook was installed after perf_trampoline; \
              perf_trampoline stays in its chain as a pass-through",),
        )?;
    }
    Ok(())
}

/// Whether calls currently go through trampolines.
#[pyfunction]
fn is_active() -> bool {
    hook::is_active()
}

/// Internal counters and paths, for tests and diagnostics.
#[pyfunction]
fn _state(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    // Copy out first: building Python objects can run Python code (the hook), which needs
    // the lock itself.
    let (slots_created, outputs, installed, code_memory) = {
        let cold = hook::cold();
        let memory = cold.source.as_ref().map_or(0, |s| s.memory_bytes());
        (cold.slots_created, cold.registry.paths(), cold.installed, memory)
    };
    let d = pyo3::types::PyDict::new(py);
    d.set_item("slots_created", slots_created)?;
    d.set_item("outputs", outputs)?;
    d.set_item("hook_installed", installed)?;
    d.set_item("code_memory", code_memory)?;
    d.set_item("extra_index", hook::extra_index())?;
    // Whether new code objects are named by reading their fields (else through getattr).
    d.set_item("names_by_offset", code_fields::found().is_some())?;
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(activate, m)?)?;
    m.add_function(wrap_pyfunction!(deactivate, m)?)?;
    m.add_function(wrap_pyfunction!(is_active, m)?)?;
    m.add_function(wrap_pyfunction!(_state, m)?)?;
    m.add_function(wrap_pyfunction!(flamegraph::flamegraph_svg, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_prepare_code, m)?)?;
    m.add_function(wrap_pyfunction!(unwind::unwind_perf_data, m)?)?;
    m.add_function(wrap_pyfunction!(unwind::perf_data_has_user_stacks, m)?)?;
    m.add("BACKENDS", backend::NAMES.to_vec())?;
    m.add("STRATEGIES", Strategy::NAMES.to_vec())?;
    Ok(())
}
