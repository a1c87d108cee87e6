//! Test-only (feature `frame-walk`): the frame-pointer walk Linux perf does on user stacks,
//! taken from inside a Python call, so isa-tests/extension.sh can check on each ISA that the
//! walk passes through the trampolines the perf map names.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use super::stack_guard::this_threads_stack;

/// Most frames returned: a deeper walk has gone wrong.
const MAX_FRAMES: usize = 512;

/// The return addresses a frame-pointer walk finds from here up (this function's caller
/// first), as perf's user-stack walker reads them (s390x: the back chain). The walk stops at
/// the first record that lies outside this thread's stack or not above the previous one, so
/// a frame built without a frame record ends it instead of crashing it.
#[pyfunction]
#[inline(never)]
pub fn _frame_pointer_walk() -> PyResult<Vec<usize>> {
    let (low, high) = this_threads_stack()
        .ok_or_else(|| PyOSError::new_err("frame-pointer walk: this thread's stack is unknown"))?;
    // A word is read only once it is known to lie on this stack.
    let read = |at: usize| -> Option<usize> {
        (at >= low && at.checked_add(8)? <= high && at.is_multiple_of(8))
            // SAFETY: `at` lies inside this thread's mapped stack and is aligned (checked above).
            .then(|| unsafe { *(at as *const usize) })
    };
    let mut out = Vec::new();
    let mut frame = frame_register();
    while out.len() < MAX_FRAMES {
        let Some(next) = frame.checked_sub(NEXT_BELOW).and_then(read) else {
            break;
        };
        let Some(ret) = return_slot(frame, next).and_then(read) else {
            break;
        };
        if ret == 0 {
            break;
        }
        out.push(strip_pointer_authentication(ret));
        if next <= frame {
            break;
        }
        frame = next;
    }
    Ok(out)
}

/// How far below the frame value the saved next frame value lies: the RISC-V psABI puts
/// {saved s0, ra} just below s0, which is the CFA; elsewhere the record starts at the frame
/// value (s390x: the back chain word at the stack pointer).
const NEXT_BELOW: usize = if cfg!(target_arch = "riscv64") { 16 } else { 0 };

/// Where the return address out of the frame `frame` was saved, `next` being its caller's.
fn return_slot(frame: usize, next: usize) -> Option<usize> {
    if cfg!(target_arch = "riscv64") {
        frame.checked_sub(8)
    } else if cfg!(target_arch = "s390x") {
        // Each function saves its return address (%r14) at 112 in its caller's frame.
        next.checked_add(112)
    } else {
        frame.checked_add(8)
    }
}

/// A return address without the signature AArch64 pointer authentication puts in its top
/// bits (Debian signs saved return addresses); perf strips it the same way. User addresses
/// have at most 48 bits there.
fn strip_pointer_authentication(ret: usize) -> usize {
    if cfg!(target_arch = "aarch64") {
        ret & ((1 << 48) - 1)
    } else {
        ret
    }
}

/// This function's frame register: the frame pointer (s390x: the stack pointer, whose first
/// word is the back chain).
#[inline(always)]
fn frame_register() -> usize {
    let value: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register, nothing else.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "riscv64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!("mv {}, s0", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "s390x")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!("lgr {}, %r15", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}
