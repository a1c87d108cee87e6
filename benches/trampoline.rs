//! Criterion benches: call overhead, trampoline creation and registry cost, alternatives side by side.
//!
//! `cargo bench --bench trampoline` (a filter picks groups: `-- call`, `-- create`, `-- record`;
//! `-- call_ratios` runs only the interleaved call ratios printed at the end). Each group holds
//! the alternatives of one question, so criterion's report compares them. x86-64 and aarch64.

use std::ffi::{c_int, c_void};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use criterion::{Criterion, criterion_group};

use perf_trampoline::jitdump::{self, JitDump};
use perf_trampoline::perf_map::{self, PerfMap};
use perf_trampoline::{
    CompileEach, EvalFn, Registry, Sink, SlotSource, StampArena, Symbol, Target, Template,
    Trampoline, Writers, build_function, compile, jit_template, target_isa,
};

// The hand-written baselines, CPython's template written again: `frame` keeps a frame record
// as ours does; `noframe` only realigns the stack, as CPython's current x86-64 template does.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl pt_bench_asm_frame",
    ".hidden pt_bench_asm_frame",
    ".type pt_bench_asm_frame, @function",
    "pt_bench_asm_frame:",
    "push rbp",
    "mov rbp, rsp",
    "call rcx",
    "pop rbp",
    "ret",
    ".globl pt_bench_asm_frame_end",
    ".hidden pt_bench_asm_frame_end",
    "pt_bench_asm_frame_end:",
    ".size pt_bench_asm_frame, . - pt_bench_asm_frame",
    ".p2align 4",
    ".globl pt_bench_asm_noframe",
    ".hidden pt_bench_asm_noframe",
    ".type pt_bench_asm_noframe, @function",
    "pt_bench_asm_noframe:",
    "sub rsp, 8",
    "call rcx",
    "add rsp, 8",
    "ret",
    ".size pt_bench_asm_noframe, . - pt_bench_asm_noframe",
);

// aarch64 has no frameless form worth having: `blr` clobbers x30, which must be saved anyway,
// so both names are the same frame-record code.
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl pt_bench_asm_frame",
    ".hidden pt_bench_asm_frame",
    ".type pt_bench_asm_frame, %function",
    ".globl pt_bench_asm_noframe",
    ".hidden pt_bench_asm_noframe",
    ".type pt_bench_asm_noframe, %function",
    "pt_bench_asm_frame:",
    "pt_bench_asm_noframe:",
    "stp x29, x30, [sp, #-16]!",
    "mov x29, sp",
    "blr x3",
    "ldp x29, x30, [sp], #16",
    "ret",
    ".globl pt_bench_asm_frame_end",
    ".hidden pt_bench_asm_frame_end",
    "pt_bench_asm_frame_end:",
    ".size pt_bench_asm_frame, . - pt_bench_asm_frame",
    ".size pt_bench_asm_noframe, . - pt_bench_asm_noframe",
);

unsafe extern "C" {
    fn pt_bench_asm_frame(
        ts: *mut c_void,
        f: *mut c_void,
        throw: c_int,
        eval: EvalFn,
    ) -> *mut c_void;
    fn pt_bench_asm_noframe(
        ts: *mut c_void,
        f: *mut c_void,
        throw: c_int,
        eval: EvalFn,
    ) -> *mut c_void;
    static pt_bench_asm_frame_end: u8;
}

/// The bytes of the `asm_frame` baseline, to be copied elsewhere as CPython copies its template.
fn asm_frame_code() -> &'static [u8] {
    let start = pt_bench_asm_frame as *const () as usize;
    let end = &raw const pt_bench_asm_frame_end as usize;
    // SAFETY: both symbols delimit the function's code in this binary's text.
    unsafe { std::slice::from_raw_parts(start as *const u8, end - start) }
}

/// A read-execute copy of `code` mapped within 2 GiB of `near` (a free page about 256 MiB below
/// it), or None. Shows what placement alone costs: anonymous mappings land far from the binary.
fn copy_near(code: &[u8], near: usize) -> Option<Trampoline> {
    let page = 4096;
    // Not a power of two away: with `near`'s low 28 address bits, the copy's branches would share
    // branch-predictor entries with the evaluator's (criterion once measured 16 ns per call so).
    let first = (near & !(page - 1)).checked_sub((1 << 28) + 0x35 * page)?;
    let mem = (0..256).map(|k| first - k * page).find_map(|hint| {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping; it fails if the page is taken.
        let mem = unsafe {
            libc::mmap(
                hint as *mut c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        (mem as usize == hint).then_some(mem)
    })?;
    // SAFETY: `mem` is one fresh writable page and `code` is shorter; then it becomes read-execute.
    unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), mem.cast::<u8>(), code.len());
        assert_eq!(
            libc::mprotect(mem, page, libc::PROT_READ | libc::PROT_EXEC),
            0
        );
        Some(std::mem::transmute::<*mut c_void, Trampoline>(mem))
    }
}

/// Stands in for `_PyEval_EvalFrameDefault`: as little work as a real function can do, so
/// the calls around it are what the numbers show.
///
/// # Safety
/// None needed: it reads nothing through its pointers (unsafe for its type only).
#[inline(never)]
unsafe extern "C" fn evaluator(ts: *mut c_void, frame: *mut c_void, throw: c_int) -> *mut c_void {
    (ts as usize ^ frame as usize ^ throw as usize) as *mut c_void
}

fn host_template() -> Template {
    compile(&Target::Host, false).expect("the host template compiles")
}

/// The ways to reach the evaluator, all taken through black-boxed function pointers.
struct Calls {
    through: Vec<(&'static str, Trampoline)>,
}

const TS: *mut c_void = 0x1000 as *mut c_void;
const FRAME: *mut c_void = 0x2000 as *mut c_void;

impl Calls {
    fn new() -> Calls {
        let template = host_template();
        // Nothing here is ever unmapped: a bench process ends soon enough.
        // SAFETY: `code` is the host template or the bench's own call-through assembly, which
        // has the trampoline's signature.
        let stamp = |code: &[u8]| unsafe { StampArena::new(code, 0).next_slot().unwrap().as_fn() };
        // SAFETY: cranelift-jit compiles the host template.
        let compiled = unsafe { CompileEach::new().unwrap().next_slot().unwrap().as_fn() };
        let mut through: Vec<(&str, Trampoline)> = vec![
            ("asm_frame", pt_bench_asm_frame),
            ("asm_noframe", pt_bench_asm_noframe),
            ("asm_frame_copied", stamp(asm_frame_code())),
            ("stamped", stamp(&template.code)),
            ("compile_each", compiled),
        ];
        if let Some(near) = copy_near(&template.code, evaluator as EvalFn as usize) {
            through.push(("stamped_near", near));
        }
        Calls { through }
    }
}

#[inline(always)]
fn call_direct() -> *mut c_void {
    let eval: EvalFn = evaluator;
    // SAFETY: `evaluator` reads nothing through its pointer arguments.
    unsafe { black_box(eval)(black_box(TS), black_box(FRAME), black_box(0)) }
}

#[inline(always)]
fn call_through(tramp: Trampoline) -> *mut c_void {
    // SAFETY: the trampoline calls `evaluator`, which reads nothing through its pointers.
    unsafe {
        black_box(tramp)(
            black_box(TS),
            black_box(FRAME),
            black_box(0),
            black_box(evaluator as EvalFn),
        )
    }
}

fn call_overhead(c: &mut Criterion) {
    let calls = Calls::new();
    let mut g = c.benchmark_group("call");
    g.bench_function("direct", |b| b.iter(call_direct));
    for &(name, tramp) in &calls.through {
        g.bench_function(name, |b| b.iter(|| call_through(tramp)));
    }
    g.finish();
}

/// Paired ratios of call costs, measured interleaved: criterion runs one alternative after the
/// other, and on a shared machine the load changes in between by more than the 5% in question.
/// Each round times a block of calls of every alternative (in rotating order); the ratios of
/// one round share the machine's state.
fn call_ratios() {
    const CALLS: u32 = 20_000;
    const ROUNDS: usize = 1_000;
    let calls = Calls::new();
    let block = |tramp: Option<Trampoline>| {
        let start = Instant::now();
        for _ in 0..CALLS {
            black_box(tramp.map_or_else(call_direct, call_through));
        }
        start.elapsed().as_secs_f64()
    };
    let mut alternatives: Vec<(&str, Option<Trampoline>)> = vec![("direct", None)];
    alternatives.extend(calls.through.iter().map(|&(n, t)| (n, Some(t))));
    let n = alternatives.len();
    let mut times = vec![Vec::with_capacity(ROUNDS); n];
    for round in 0..ROUNDS {
        for k in 0..n {
            let i = (round + k) % n;
            times[i].push(block(alternatives[i].1));
        }
    }
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
    };
    let per_round = |f: &dyn Fn(usize) -> f64| quartiles((0..ROUNDS).map(f).collect());
    let show = |(lo, mid, hi): (f64, f64, f64)| format!("{mid:.3} ({lo:.2}–{hi:.2})");
    let template = compile(&Target::Host, true).expect("the host template compiles");
    println!(
        "\nthe stamped template ({} bytes):\n{}",
        template.code.len(),
        template.disassembly.unwrap_or_default()
    );
    println!(
        "call_ratios: {ROUNDS} interleaved rounds of {CALLS} calls; median (25%–75%) of per-round values."
    );
    println!(
        "`time` is per call, `added` is time less a direct call's; both relative to a baseline."
    );
    // Baselines: the assembly linked into this binary, and the same bytes copied into an
    // anonymous mapping, which is where CPython puts its copies.
    let baselines = [1, 3];
    print!("{:<18} {:>20}", "alternative", "ns per call");
    for &b in &baselines {
        print!(
            " {:>24} {:>24}",
            format!("time / {}", alternatives[b].0),
            format!("added / {}'s", alternatives[b].0)
        );
    }
    println!();
    let direct = &times[0];
    for (i, (name, _)) in alternatives.iter().enumerate() {
        let t = &times[i];
        print!(
            "{name:<18} {:>20}",
            show(per_round(&|r| t[r] / f64::from(CALLS) * 1e9))
        );
        for &b in &baselines {
            let base = &times[b];
            print!(" {:>24}", show(per_round(&|r| t[r] / base[r])));
            print!(
                " {:>24}",
                show(per_round(&|r| (t[r] - direct[r]) / (base[r] - direct[r])))
            );
        }
        println!();
    }
}

/// One cranelift-jit module that compiles `batch` trampolines per `finalize_definitions`:
/// what compile-each would cost if code objects could wait for company.
struct Batched {
    module: JITModule,
    isa: cranelift_codegen::isa::OwnedTargetIsa,
    ctx: cranelift_codegen::Context,
    count: u64,
}

impl Batched {
    fn new() -> Batched {
        let isa = target_isa(&Target::Host).unwrap();
        let module = JITModule::new(JITBuilder::with_isa(
            isa.clone(),
            cranelift_module::default_libcall_names(),
        ));
        let ctx = module.make_context();
        Batched {
            module,
            isa,
            ctx,
            count: 0,
        }
    }

    fn compile(&mut self, batch: u64) -> usize {
        let mut ids = Vec::with_capacity(batch as usize);
        for _ in 0..batch {
            self.ctx.clear();
            self.ctx.func = build_function(&*self.isa);
            let id = self
                .module
                .declare_function(
                    &format!("batched_{}", self.count),
                    Linkage::Local,
                    &self.ctx.func.signature,
                )
                .unwrap();
            self.count += 1;
            self.module.define_function(id, &mut self.ctx).unwrap();
            ids.push(id);
        }
        self.module.finalize_definitions().unwrap();
        ids.iter()
            .map(|id| self.module.get_finalized_function(*id) as usize)
            .sum()
    }
}

fn creation(c: &mut Criterion) {
    let template = host_template();
    let mut g = c.benchmark_group("create");
    // Every iteration maps memory that is never given back (code must outlive its maker),
    // so the slow alternatives get few samples.
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.bench_function("stamp", |b| {
        b.iter_custom(|iters| {
            let mut arena = StampArena::new(&template.code, 0);
            let start = Instant::now();
            for _ in 0..iters {
                black_box(arena.next_slot().unwrap());
            }
            let t = start.elapsed();
            // SAFETY: nothing ever ran in these slots.
            unsafe { arena.release() };
            t
        })
    });
    g.bench_function("compile_each", |b| {
        b.iter_custom(|iters| {
            let mut each = CompileEach::new().unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                black_box(each.next_slot().unwrap());
            }
            start.elapsed()
        })
    });
    for batch in [16u64, 256] {
        g.bench_function(format!("compile_batched_{batch}"), |b| {
            b.iter_custom(|iters| {
                let mut jit = Batched::new();
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(batch);
                    black_box(jit.compile(n));
                    left -= n;
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// A name as long as a typical `py::<qualname>:<filename>` of an installed package.
const NAME: &[u8] =
    b"py::Scheduler.dispatch_packet:/usr/lib/python3/dist-packages/app/scheduler.py";

fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("pt-bench-registry-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Empties and removes a file the bench wrote. Emptied first: the jitdump's marker mapping
/// keeps a removed file's blocks alive until the process ends.
fn discard(path: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.set_len(0);
    }
    let _ = std::fs::remove_file(path);
}

fn registry_cost(c: &mut Criterion) {
    let template = jit_template(&host_template()).expect("the host's unwind sections");
    let dir = scratch_dir();
    let pid = std::process::id();
    let stride = jitdump::min_stride(&template);
    let map_path = dir.join(format!("perf-{pid}.map"));
    let dump_path = dir.join(format!("jit-{pid}.dump"));
    let open_map =
        || -> Box<dyn Sink> { Box::new(PerfMap::open(&map_path, Writers::OnlyUs).unwrap()) };
    let open_dump = || -> Box<dyn Sink> {
        Box::new(JitDump::open(&dump_path, pid, &template, Writers::OnlyUs).unwrap())
    };

    let mut g = c.benchmark_group("record");
    g.measurement_time(Duration::from_secs(3));
    for (name, map, dump) in [
        ("perf_map", true, false),
        ("jitdump", false, true),
        ("perf_map+jitdump", true, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut sinks = Vec::new();
                if map {
                    sinks.push(open_map());
                }
                if dump {
                    sinks.push(open_dump());
                }
                let mut registry = Registry::new(sinks);
                let start = Instant::now();
                for i in 0..iters as usize {
                    let sym = Symbol {
                        addr: 0x7f00_0000_0000 + i * stride,
                        size: template.code.len(),
                        name: NAME,
                    };
                    assert!(registry.record(black_box(&sym)).is_empty());
                }
                let t = start.elapsed();
                drop(registry);
                discard(&map_path);
                discard(&dump_path);
                t
            })
        });
    }
    // What a perf-map record costs without its write(2): the floor for a sink that batches.
    g.bench_function("perf_map_line_only", |b| {
        let mut line = Vec::with_capacity(256);
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            line.clear();
            let sym = Symbol {
                addr: 0x7f00_0000_0000 + i * stride,
                size: template.code.len(),
                name: NAME,
            };
            perf_map::format_line(&mut line, black_box(&sym));
            black_box(line.len())
        })
    });
    g.finish();
    let _ = std::fs::remove_dir(&dir);
}

criterion_group!(benches, call_overhead, creation, registry_cost);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Criterion's filter is its one positional argument; `call` and `call_ratios` select these.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_none_or(|f| "call_ratios".contains(f.as_str())) {
        call_ratios();
    }
}
