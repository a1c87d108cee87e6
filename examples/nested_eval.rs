//! A tiny evaluator of our own whose calls go through perf-trampoline's trampolines.
//!
//! The "program" is three functions, `rs::outer` calls `rs::middle` calls `rs::inner`, and
//! inner spins. Every call goes `evaluate -> trampoline -> evaluate`, exactly like CPython's
//! `_PyEval_EvalFrameDefault -> trampoline -> _PyEval_EvalFrameDefault`, and each function's
//! trampoline is named in /tmp/perf-<pid>.map. Under `perf record -g` the samples read
//! `rs::inner < rs::middle < rs::outer`, whatever the rest of the process was built with.
//!
//!     cargo run --example nested_eval -- [seconds]

use std::ffi::{c_int, c_void};
use std::time::{Duration, Instant};

use perf_trampoline::perf_map::PerfMap;
use perf_trampoline::{Registry, Slot, Strategy, Symbol, Writers, host_source, output_dir};

enum Op {
    Call(usize),
    Spin,
}

struct Function {
    name: &'static str,
    body: Vec<Op>,
    slot: Slot,
}

struct Machine {
    functions: Vec<Function>,
    deadline: Instant,
    spins: u64,
}

/// The evaluator: runs one function; `frame` is its index, `state` the machine.
///
/// # Safety
/// `state` must point at a live `Machine` no one else uses during the call.
unsafe extern "C" fn evaluate(
    state: *mut c_void,
    frame: *mut c_void,
    _throw: c_int,
) -> *mut c_void {
    // SAFETY: `state` is the &mut Machine passed to `call` below, alive for the whole run.
    let m = unsafe { &mut *state.cast::<Machine>() };
    let index = frame as usize;
    for i in 0..m.functions[index].body.len() {
        match m.functions[index].body[i] {
            Op::Call(callee) => call(m, callee),
            Op::Spin => {
                while Instant::now() < m.deadline {
                    m.spins = std::hint::black_box(
                        m.spins.wrapping_mul(6364136223846793005).wrapping_add(1),
                    );
                }
            }
        }
    }
    std::ptr::null_mut()
}

/// Calls function `index` through its own trampoline.
fn call(m: &mut Machine, index: usize) {
    // SAFETY: the slot comes from a host slot source, so it holds the trampoline.
    let tramp = unsafe { m.functions[index].slot.as_fn() };
    let state = (m as *mut Machine).cast();
    // SAFETY: the trampoline calls `evaluate` with the same three arguments.
    unsafe { tramp(state, index as *mut c_void, 0, evaluate) };
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = std::env::args().nth(1).map_or(Ok(1.0), |s| s.parse())?;
    let mut source = host_source(Strategy::Stamp)?;
    let map = output_dir().join(format!("perf-{}.map", std::process::id()));
    let mut registry = Registry::new(vec![Box::new(PerfMap::open(&map, Writers::OnlyUs)?)]);
    let program = [
        ("rs::outer", vec![Op::Call(1)]),
        ("rs::middle", vec![Op::Call(2)]),
        ("rs::inner", vec![Op::Spin]),
    ];
    let mut functions = Vec::new();
    for (name, body) in program {
        let slot = source.next_slot()?;
        if let Some(failure) = registry
            .record(&Symbol {
                addr: slot.addr,
                size: slot.size,
                name: name.as_bytes(),
            })
            .pop()
        {
            return Err(failure.into());
        }
        functions.push(Function { name, body, slot });
    }
    let mut m = Machine {
        functions,
        deadline: Instant::now() + Duration::from_secs_f64(seconds),
        spins: 0,
    };
    call(&mut m, 0);
    // Cuts the map's unused room off (perf would skip it, but a clean file is nicer to read).
    registry.close();
    let names: Vec<_> = m.functions.iter().map(|f| f.name).collect();
    println!(
        "ran {} for {seconds}s ({} spins)",
        names.join(" -> "),
        m.spins
    );
    Ok(())
}
