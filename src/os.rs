//! Small questions to the operating system that several modules ask: page size, clocks,
//! the thread id, the effective user.

use std::cell::Cell;
use std::time::Duration;

/// The system's page size (mappings and their offsets are multiples of it).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// The clock `id` (a `CLOCK_*` constant) as a duration since its epoch.
fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; an unknown clock id leaves it zero.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `CLOCK_MONOTONIC` in nanoseconds: what `perf record -k 1` stamps samples with.
pub fn monotonic_ns() -> u64 {
    clock(libc::CLOCK_MONOTONIC).as_nanos() as u64
}

/// Time since boot, suspended time included (`CLOCK_BOOTTIME`, the clock `/proc` counts
/// process start times in).
pub fn since_boot() -> Duration {
    clock(libc::CLOCK_BOOTTIME)
}

/// Clock ticks per second, the unit of times in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

thread_local! {
    /// The calling thread's id once asked for (0: not yet): a system call per record otherwise.
    static TID: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's id (cached per thread).
pub fn thread_id() -> u32 {
    TID.with(|t| {
        if t.get() == 0 {
            // SAFETY: gettid has no preconditions.
            t.set(unsafe { libc::syscall(libc::SYS_gettid) as u32 });
        }
        t.get()
    })
}

/// Call in a forked child (from the thread that forked): its copy of the cache names the
/// parent's thread.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub fn forget_thread_id() {
    TID.with(|t| t.set(0));
}
