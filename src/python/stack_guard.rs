//! Ends runaway recursion with RecursionError before the C stack runs out.
//!
//! With any eval hook installed CPython stops inlining Python-to-Python calls, so every Python
//! call costs C stack (the evaluator's frame, ours, the trampoline's). CPython 3.12+ counts C
//! recursion or watches the stack and raises RecursionError in time, so there the guard stays
//! off; 3.9-3.11 only count Python frames, and a raised limit (`sys.setrecursionlimit(50_000)`)
//! would overflow the thread's C stack and crash (3.9 and 3.10 crash so even without any
//! hook). So on those the hook itself checks how much C stack is left.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::os::page_size;

/// Stack kept free below the point where we refuse a new frame: enough for CPython to unwind,
/// build the traceback and run `except` blocks. A quarter of the stack on small thread stacks.
const MARGIN: usize = 256 * 1024;

/// The thread state whose stack `LIMIT` describes. The hook runs with the GIL held, so one
/// thread at a time uses these; another thread's first call after a switch refreshes them.
static OWNER: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(0);

/// How far below its top we take the main thread's stack to reach at most: the kernel puts
/// other mappings (`mmap_base`) at least this far, and at least the stack rlimit, under it.
const MAIN_STACK_ROOM: usize = 128 << 20;

/// The lowest stack address this thread may reach before we refuse new frames. Kept out of
/// line: inlined into the hook it would grow the hook's frame, which every Python call pays.
#[cold]
#[inline(never)]
fn limit_of_this_thread() -> usize {
    let on_main =
        main_threads_stack().filter(|&(low, high)| (low..high).contains(&stack_pointer()));
    match on_main.or_else(this_threads_stack) {
        Some((low, high)) => low + MARGIN.min((high - low) / 4),
        None => 0, // unknown: never refuse
    }
}

/// The main thread's stack as [low, high), found without `pthread_getattr_np`, which for the
/// main thread reads all of /proc/self/maps: 0.1-0.3 ms at start-up, and again at every switch
/// of the GIL back to the main thread, since `OWNER` changes with each. Its top is just above
/// the executable's name, the highest string the kernel puts on it (`AT_EXECFN`), and it grows
/// down by at most the stack rlimit, capped at `MAIN_STACK_ROOM`. None when the rlimit is
/// unlimited (then the kernel may place mappings anywhere below) or this is not the main
/// thread (the caller also checks where the stack pointer is: a child forked from another
/// thread runs on that thread's stack).
fn main_threads_stack() -> Option<(usize, usize)> {
    // SAFETY: plain system calls; AT_EXECFN, when present, points at a NUL-terminated string
    // the kernel wrote at exec and that stays for the life of the process.
    unsafe {
        if libc::getpid() != libc::gettid() {
            return None;
        }
        let name = libc::getauxval(libc::AT_EXECFN) as *const libc::c_char;
        let mut limit: libc::rlimit = std::mem::zeroed();
        if name.is_null() || libc::getrlimit(libc::RLIMIT_STACK, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        let high = (name as usize + libc::strlen(name) + 1).next_multiple_of(page_size());
        let size = (limit.rlim_cur as usize).min(MAIN_STACK_ROOM);
        Some((high.checked_sub(size)?, high))
    }
}

/// The calling thread's stack as [low, high), if the C library can tell.
pub fn this_threads_stack() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; we destroy it after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let (mut base, mut size): (*mut c_void, usize) = (std::ptr::null_mut(), 0);
        let ok = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| (base as usize, base as usize + size))
    }
}

/// Whether a frame about to be evaluated by thread state `ts` would run too close to the end
/// of the C stack. Cheap: two loads and a compare unless the thread changed.
#[inline]
pub fn near_the_end(ts: *mut c_void) -> bool {
    let here = stack_pointer();
    if OWNER.load(Relaxed) != ts as usize {
        LIMIT.store(limit_of_this_thread(), Relaxed);
        OWNER.store(ts as usize, Relaxed);
    }
    here < LIMIT.load(Relaxed)
}

/// The current stack pointer. Read with asm where we can: taking a local's address would put
/// it on the stack and keep the hook from tail-calling the trampoline.
#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register, nothing else.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let here = 0u8;
        sp = std::hint::black_box(&here) as *const u8 as usize;
    }
    sp
}

/// Forgets the cached thread (after fork the child's only thread may reuse a thread state
/// address with another stack).
pub fn forget() {
    OWNER.store(0, Relaxed);
}
