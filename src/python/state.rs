//! The extension's runtime state and its one owner: the template, the slot source, the
//! outputs, the installed hook, what forks have done to them, and the exit handler. Changed
//! only through the verbs here (activate, deactivate, follow a fork, a new slot, close at
//! exit), each under one lock.
//!
//! The rule of that lock: never run Python code while holding it (no Python object
//! conversions, imports or calls). Python code runs through the hook, whose first-call path
//! takes the lock too. The guard never leaves this file, verbs that need Python do that
//! part before or after taking it, and what a verb has to say comes back as [`Messages`],
//! printed once the lock is released.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, Once};

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

use super::discover::{self, Discovered};
use super::{children, hot};
use crate::compile_error::CompileError;
use crate::compose::backend::{Backends, open_sink};
use crate::compose::strategy::{Strategy, source_for};
use crate::isa::Isa;
use crate::jit_template::JitTemplate;
use crate::prebuilt;
use crate::registry::{self, OpenError, Registry, Writers};
use crate::slots::EvalFn;
use crate::slots::SlotSource;

/// What `activate()` asks for, its arguments checked.
pub struct Request<'a> {
    /// The outputs, and how the user spelled them (handed on to child processes as it is).
    pub backends: Backends,
    pub backend_name: &'a str,
    pub strategy: Strategy,
    /// Whether to run on top of CPython's own trampoline (and share its files).
    pub stack_on_cpython: bool,
    /// Whether a forked child's outputs start with everything the parent's named.
    pub persist_after_fork: bool,
    /// Executable memory for trampolines at most (None: no limit).
    pub max_code_memory: Option<usize>,
    /// Whether child processes get support (None: leave it as it is).
    pub children: Option<bool>,
    /// The eval hook to install. Handed in so this module stays below the hook, which asks
    /// it for slots.
    pub hook: EvalFn,
}

/// Warnings a verb produced under the lock, to print once it is released.
#[must_use = "print them: they tell the user an output or trampolines are gone"]
#[derive(Default)]
pub struct Messages(Vec<String>);

impl Messages {
    /// Prints each one as a warning line on stderr (never through Python's `warnings`,
    /// which could re-enter the hook).
    pub fn print(self) {
        for m in self.0 {
            eprintln!("perf_trampoline: warning: {m}");
        }
    }
}

/// What `_state()` reports: a copy, so building Python objects from it needs no lock.
pub struct Snapshot {
    pub slots_created: u64,
    pub outputs: Vec<PathBuf>,
    pub hook_installed: bool,
    pub code_memory: usize,
    /// Our co_extra index (-1 before the first activation).
    pub extra_index: isize,
    /// Whether new code objects are named by reading their fields (else through getattr).
    pub names_by_offset: bool,
}

/// Everything activation and a code object's first call change.
struct State {
    /// The host's trampoline and its jitdump unwind sections (prebuilt), from the first
    /// activation on.
    template: Option<JitTemplate>,
    /// Where new slots come from, and their stride. Slots stay cached in code objects across
    /// deactivation, so a source is never dropped: when a later activation needs a wider
    /// stride, the old source is leaked, never unmapped.
    source: Option<Box<dyn SlotSource>>,
    stride: usize,
    registry: Registry,
    /// The hook we installed, while it is installed.
    hook: Option<EvalFn>,
    /// The hook value we replaced, restored on deactivation (None = CPython's default).
    replaced: Option<EvalFn>,
    slots_created: u64,
    warned_no_slot: bool,
    persist_after_fork: bool,
    /// How many forks the outputs have followed (see [`State::follow_fork`]).
    forks_seen: u64,
    /// Who else writes our files: CPython's own trampoline, once `stack_on_cpython` was asked for.
    writers: Writers,
    /// Whether a forked child keeps support on; `activate(children=False)` turns it off there.
    forks_keep_support: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    template: None,
    source: None,
    stride: 0,
    registry: Registry::empty(),
    hook: None,
    replaced: None,
    slots_created: 0,
    warned_no_slot: false,
    persist_after_fork: true,
    forks_seen: 0,
    writers: Writers::OnlyUs,
    forks_keep_support: true,
});

/// Forks this process has gone through, counted in the child by a `pthread_atfork` handler:
/// every fork, also one made from C that runs no Python at-fork hook.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// The process whose outputs the at-exit handler ends (a forked child inherits the handler).
static OUTPUTS_OWNER: AtomicUsize = AtomicUsize::new(0);

fn lock() -> MutexGuard<'static, State> {
    // A panic while holding the lock leaves the state consistent enough to go on with.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns support on as `req` says: every Python function called from now on runs inside its
/// own trampoline, named in the outputs. The strategy and the memory budget are fixed by the
/// first activation.
pub fn activate(py: Python<'_>, req: &Request<'_>) -> PyResult<()> {
    let found = discover::find(py)?;
    if !req.stack_on_cpython && !installed() && cpython_own_trampoline_active(py) {
        return Err(PyRuntimeError::new_err(
            "CPython's own perf trampoline is active (-X perf / PYTHONPERFSUPPORT): turn it off \
             with sys.deactivate_stack_trampoline(), or pass stack_on_cpython=True to run ours \
             on top of it (each function then appears twice in profiles)",
        ));
    }
    let messages = lock().activate(found, req)?;
    messages.print();
    // os.environ's methods run before support goes on: the program's own code is the first
    // to get trampolines.
    children::pass_on(py, req.children, req.backend_name)?;
    // Unless a deactivate() from another thread came in between (it holds the lock too).
    let state = lock();
    if state.hook.is_some() {
        hot::set_active(true);
    }
    Ok(())
}

/// Turns support off. Trampolines already on the stack stay valid and return normally.
pub fn deactivate(py: Python<'_>) -> PyResult<()> {
    let api = super::capi::api().map_err(PyRuntimeError::new_err)?;
    if lock().deactivate(api) {
        let warnings = py.import("warnings")?;
        warnings.call_method1(
            "warn",
            (
                "another frame-evaluation hook was installed after perf_trampoline; \
              perf_trampoline stays in its chain as a pass-through",
            ),
        )?;
    }
    Ok(())
}

/// Whether our hook is installed.
pub fn installed() -> bool {
    lock().hook.is_some()
}

/// Moves the outputs to files of this process's own if it was forked since they were
/// opened (see [`State::follow_fork`]); for the Python at-fork hook.
pub fn follow_fork() -> Messages {
    lock().follow_fork()
}

/// A new slot for a code object called `name` (raw bytes, as the sinks take them), recorded
/// in every output; None when no slot can be had (then the code runs without one).
pub fn new_slot(name: &[u8]) -> (Option<usize>, Messages) {
    lock().new_slot(name)
}

/// The counters and paths `_state()` reports.
pub fn snapshot() -> Snapshot {
    let (slots_created, outputs, hook_installed, code_memory) = {
        let s = lock();
        let memory = s.source.as_ref().map_or(0, |s| s.memory_bytes());
        (
            s.slots_created,
            s.registry.paths(),
            s.hook.is_some(),
            memory,
        )
    };
    Snapshot {
        slots_created,
        outputs,
        hook_installed,
        code_memory,
        extra_index: hot::extra_index(),
        names_by_offset: discover::found().is_some_and(|d| d.fields.is_some()),
    }
}

fn cpython_own_trampoline_active(py: Python<'_>) -> bool {
    py.import("sys")
        .and_then(|sys| sys.getattr("is_stack_trampoline_active"))
        .and_then(|f| f.call0())
        .and_then(|r| r.is_truthy())
        .unwrap_or(false)
}

fn runtime_err(e: CompileError) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// `OSError(errno, text, path)`, which Python turns into PermissionError, FileNotFoundError...
fn os_error(e: OpenError) -> PyErr {
    let reason = e.error.to_string();
    let reason = reason.split(" (os error").next().unwrap_or(&reason);
    let text = format!("cannot open the {} for writing: {reason}", e.kind);
    let errno = e.error.raw_os_error().unwrap_or(match e.error.kind() {
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::NotFound => libc::ENOENT,
        _ => libc::EIO,
    });
    PyOSError::new_err((errno, text, e.path))
}

impl State {
    fn activate(&mut self, found: &Discovered, req: &Request<'_>) -> PyResult<Messages> {
        if self.template.is_none() {
            self.template = Isa::host().map(prebuilt::jit_template);
        }
        // A forked child activating again: first move what it inherited to files of its own.
        let messages = self.follow_fork();
        let template = self.template.as_ref();
        let code = template
            .map(|t| t.code.as_slice())
            .ok_or_else(|| PyRuntimeError::new_err("no trampoline template for this machine"))?;
        let stride = template.map_or(0, |t| req.backends.min_stride(t));
        if req.stack_on_cpython {
            // From now on CPython's trampoline may write into our files too (now or later).
            self.writers = Writers::WithCpython;
        }
        // Open the outputs before touching the hook, so a bad directory fails cleanly.
        let pid = std::process::id();
        let writers = self.writers;
        self.registry
            .select(
                &req.backends.outputs(&registry::output_dir(), pid),
                |kind, path| open_sink(kind, path, pid, template, writers),
            )
            .map_err(os_error)?;
        if self.source.is_none() || self.stride < stride {
            let near = found.api.default_eval as usize;
            let source = source_for(req.strategy, code, stride, req.max_code_memory, near)
                .map_err(runtime_err)?;
            // Code objects keep pointing into the old source: it must never be unmapped.
            std::mem::forget(self.source.replace(source));
            self.stride = stride;
        }
        self.persist_after_fork = req.persist_after_fork;
        if let Some(children) = req.children {
            self.forks_keep_support = children;
        }
        if self.hook.is_none() {
            let api = found.api;
            // SAFETY: the GIL is held; the interpreter is this thread's own, and the hook
            // functions are this interpreter's.
            unsafe {
                let interp = pyo3::ffi::PyInterpreterState_Get().cast();
                let current = (api.get_eval)(interp);
                // On 3.9/3.10 the default evaluator is stored explicitly, from 3.11 it is
                // NULL; any other value is someone else's hook, which we call through to
                // rather than bypass.
                hot::publish(found, current.unwrap_or(api.default_eval));
                self.replaced = current;
                self.hook = Some(req.hook);
                (api.set_eval)(interp, Some(req.hook));
            }
        }
        count_forks();
        close_at_exit();
        Ok(messages)
    }

    /// Uninstalls the hook; true when that cannot be done because someone installed a hook
    /// on top of ours and calls through to it (then ours stays in their chain, turned off).
    fn deactivate(&mut self, api: &super::capi::Api) -> bool {
        hot::set_active(false);
        let Some(ours) = self.hook else { return false };
        // SAFETY: the GIL is held; the interpreter is this thread's own.
        unsafe {
            let interp = pyo3::ffi::PyInterpreterState_Get().cast();
            let current = (api.get_eval)(interp);
            if current.map(|f| f as usize) != Some(ours as usize) {
                return true;
            }
            (api.set_eval)(interp, self.replaced);
        }
        self.hook = None;
        false
    }

    /// Moves the outputs to files of this process's own if it was forked since they were
    /// opened: the child's records must never go into its parent's files (a shared mapping
    /// of them would even write over the parent's own records), and its new slots to memory
    /// it maps itself (see `SlotSource::after_fork`). Called before every record is written
    /// and from the Python at-fork hook.
    fn follow_fork(&mut self) -> Messages {
        let forks = FORKS.load(Relaxed);
        if self.forks_seen == forks {
            return Messages::default();
        }
        self.forks_seen = forks;
        // The child's thread ids are its own (the cache names the parent's thread).
        crate::os::forget_thread_id();
        if let Some(source) = self.source.as_mut() {
            source.after_fork();
        }
        let template = self.template.as_ref();
        if self.registry.is_empty() {
            return Messages::default();
        }
        if !self.forks_keep_support {
            // Support goes off before the child writes anything. Dropping the inherited
            // outputs only unmaps them; the parent's files stay as they are. Inherited
            // trampolines keep working (their memory stays mapped).
            self.registry = Registry::empty();
            hot::set_active(false);
            return Messages::default();
        }
        let pid = std::process::id();
        let writers = self.writers;
        let messages = self.registry.after_fork(
            self.persist_after_fork,
            |kind, dir| kind.path(dir, pid),
            |kind, path| open_sink(kind, path, pid, template, writers),
        );
        close_at_exit();
        Messages(messages)
    }

    fn new_slot(&mut self, name: &[u8]) -> (Option<usize>, Messages) {
        let mut messages = self.follow_fork();
        let slot = match self.source.as_mut().map(|s| s.next_slot()) {
            Some(Ok(slot)) => {
                self.slots_created += 1;
                let sym = registry::Symbol {
                    addr: slot.addr,
                    size: slot.size,
                    name,
                };
                messages.0.extend(self.registry.record(&sym));
                Some(slot.addr)
            }
            Some(Err(e)) => {
                if !self.warned_no_slot {
                    self.warned_no_slot = true;
                    messages.0.push(e.to_string());
                }
                None
            }
            None => None,
        };
        (slot, messages)
    }
}

/// Starts counting forks (once per process).
fn count_forks() {
    static ONCE: Once = Once::new();
    extern "C" fn in_child() {
        FORKS.fetch_add(1, Relaxed);
    }
    // SAFETY: registering a plain extern "C" fn; it only touches an atomic.
    ONCE.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(in_child));
    });
}

/// Ends every output (jitdump's CODE_CLOSE) when this process exits. Registered once; called
/// again after fork so the child ends its own outputs and never its parent's.
fn close_at_exit() {
    extern "C" fn at_exit() {
        if OUTPUTS_OWNER.load(Relaxed) != std::process::id() as usize {
            return;
        }
        // try_lock: a thread that died holding the lock must not hang the exit.
        if let Ok(mut s) = STATE.try_lock() {
            s.registry.close();
        }
    }
    if OUTPUTS_OWNER.swap(std::process::id() as usize, Relaxed) == 0 {
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe { libc::atexit(at_exit) };
    }
}
