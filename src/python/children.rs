//! How support reaches child processes: the ones started anew (multiprocessing's spawn and
//! forkserver, subprocess, exec) turn it on at start-up from `PERF_TRAMPOLINE` in their
//! environment; forked ones keep the hook they inherit, or turn it off (state.rs).

use pyo3::prelude::*;

/// Our start-up switch (python/perf_trampoline/_startup.py reads it in every new Python).
const VAR: &str = "PERF_TRAMPOLINE";
/// CPython's switches, which our start-up hook honours on 3.11 and older (CPython's own
/// from 3.12 on: left alone there).
const CPYTHON_SWITCHES: [&str; 2] = ["PYTHONPERFSUPPORT", "PYTHON_PERF_JIT_SUPPORT"];

/// Carries `activate(children=...)` into `os.environ`, which every child started from now on
/// inherits: `true` hands `backend` on, `false` takes every switch that would turn support on
/// out, `None` leaves the environment as it is. Runs Python code (os.environ's methods): never
/// call it holding the state lock.
pub fn pass_on(py: Python<'_>, children: Option<bool>, backend: &str) -> PyResult<()> {
    let environ = py.import("os")?.getattr("environ")?;
    match children {
        None => Ok(()),
        Some(true) => environ.set_item(VAR, backend),
        Some(false) => {
            let cpython_lacks_its_own = py.version_info() < (3, 12);
            let ours = [VAR].into_iter().chain(
                CPYTHON_SWITCHES
                    .into_iter()
                    .filter(|_| cpython_lacks_its_own),
            );
            for name in ours {
                if environ.contains(name)? {
                    environ.del_item(name)?;
                }
            }
            Ok(())
        }
    }
}
