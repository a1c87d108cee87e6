//! Slots from both strategies, run on this machine: arguments pass through unchanged, the
//! frame record is real, memory is never writable and executable, addresses never repeat.

use std::ffi::{c_int, c_void};
use std::sync::Mutex;

use perf_trampoline::{
    DEFAULT_CHUNK_BYTES, FIRST_CHUNK_BYTES, READ_SLACK, Slot, SlotError, SlotSource, StampArena,
    Strategy, Target, compile, host_source,
};

/// What the callee saw last, and the return address it found in its caller's frame record.
static SEEN: Mutex<Option<(usize, usize, c_int, usize)>> = Mutex::new(None);

#[inline(never)]
fn caller_return_address() -> usize {
    // Our own frame record links to the callee's; the callee's record holds the return
    // address into whoever called the callee (the trampoline, if it kept a real frame).
    let fp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register, nothing else.
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp)
    };
    // SAFETY: built with frame pointers (.cargo/config.toml): fp -> [saved fp, return addr].
    unsafe {
        let callee_fp = *(fp as *const usize);
        *((callee_fp + 8) as *const usize)
    }
}

/// What the trampolines under test call: records its arguments and where it returns to.
///
/// # Safety
/// None needed: it only records its arguments (unsafe for its type only).
#[inline(never)]
unsafe extern "C" fn callee(a: *mut c_void, b: *mut c_void, c: c_int) -> *mut c_void {
    let ra = caller_return_address();
    *SEEN.lock().unwrap() = Some((a as usize, b as usize, c, ra));
    (a as usize ^ b as usize ^ 0x5a5a) as *mut c_void
}

fn call_through(slot: Slot, a: usize, b: usize, c: c_int) -> (usize, (usize, usize, c_int, usize)) {
    // SAFETY: slots come from host sources of the trampoline template.
    let tramp = unsafe { slot.as_fn() };
    // SAFETY: the trampoline calls `callee` with the three arguments, as its type says.
    let r = unsafe { tramp(a as *mut c_void, b as *mut c_void, c, callee) };
    (r as usize, SEEN.lock().unwrap().take().unwrap())
}

fn check_slot(slot: Slot) {
    for (a, b, c) in [
        (0x1234_5678_9abc_def0, 0xfedc_ba98_7654_3210, 0),
        (1, usize::MAX, -1),
        (0, 42, i32::MAX),
        (7, 9, i32::MIN),
    ] {
        let (ret, (sa, sb, sc, ra)) = call_through(slot, a, b, c);
        assert_eq!(
            (sa, sb, sc),
            (a, b, c),
            "arguments changed on the way through"
        );
        assert_eq!(ret, a ^ b ^ 0x5a5a, "result changed on the way back");
        assert!(
            (slot.addr..slot.addr + slot.size).contains(&ra),
            "callee's caller frame returns to {ra:#x}, not into the slot {:#x}+{}",
            slot.addr,
            slot.size
        );
    }
}

fn perms_of(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let range = f.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).unwrap(),
            usize::from_str_radix(hi, 16).unwrap(),
        );
        if (lo..hi).contains(&addr) {
            return f.next().unwrap().to_string();
        }
    }
    panic!("{addr:#x} is not mapped");
}

#[test]
fn stamped_slots_pass_everything_through_inside_a_real_frame() {
    let t = compile(&Target::Host, false).unwrap();
    // Small chunks, so several chunks (and chunk boundaries) are exercised.
    let mut arena = StampArena::new(&t.code, 0).with_chunk_bytes(4096);
    let per_chunk = (4096 - READ_SLACK) / arena.stride();
    for i in 0..per_chunk * 3 + 1 {
        let slot = arena.next_slot().unwrap();
        if i % per_chunk == 0 || i % per_chunk == per_chunk - 1 {
            check_slot(slot);
        }
    }
}

#[test]
fn compile_each_slots_behave_the_same() {
    let mut source = host_source(Strategy::CompileEach).unwrap();
    for _ in 0..3 {
        let slot = source.next_slot().unwrap();
        check_slot(slot);
        assert_eq!(perms_of(slot.addr), "r-xp");
    }
}

#[test]
fn code_is_never_writable_and_executable() {
    let mut source = host_source(Strategy::Stamp).unwrap();
    let slot = source.next_slot().unwrap();
    assert_eq!(perms_of(slot.addr), "r-xp");
}

#[test]
fn addresses_are_unique_and_never_reused() {
    let t = compile(&Target::Host, false).unwrap();
    let mut arena = StampArena::new(&t.code, 0).with_chunk_bytes(4096);
    let addrs: Vec<usize> = (0..10_000)
        .map(|_| arena.next_slot().unwrap().addr)
        .collect();
    let mut sorted = addrs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), addrs.len(), "an address was handed out twice");
    for w in sorted.windows(2) {
        assert!(w[1] - w[0] >= t.code.len(), "slots overlap");
    }
}

#[test]
fn stride_honours_the_minimum_asked_for() {
    let t = compile(&Target::Host, false).unwrap();
    let mut arena = StampArena::new(&t.code, 200);
    let a = arena.next_slot().unwrap();
    let b = arena.next_slot().unwrap();
    assert!(b.addr - a.addr >= 200 && (b.addr - a.addr).is_multiple_of(16));
    check_slot(b);
}

#[test]
fn an_exhausted_budget_is_a_clear_error_not_a_crash() {
    let t = compile(&Target::Host, false).unwrap();
    let mut arena = StampArena::new(&t.code, 0)
        .with_chunk_bytes(4096)
        .with_budget(Some(8192));
    let fits = 2 * ((4096 - READ_SLACK) / arena.stride());
    for _ in 0..fits {
        arena.next_slot().unwrap();
    }
    match arena.next_slot() {
        Err(e @ SlotError::Exhausted { budget: 8192 }) => {
            assert!(e.to_string().contains("8192 bytes"), "{e}")
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
}

#[test]
fn the_first_chunk_is_small_and_the_next_ones_full_size() {
    let t = compile(&Target::Host, false).unwrap();
    let mut arena = StampArena::new(&t.code, 0);
    arena.next_slot().unwrap();
    assert_eq!(arena.memory_bytes(), FIRST_CHUNK_BYTES);
    let in_first = (FIRST_CHUNK_BYTES - READ_SLACK) / arena.stride();
    for _ in 0..in_first {
        arena.next_slot().unwrap();
    }
    assert_eq!(
        arena.memory_bytes(),
        FIRST_CHUNK_BYTES + DEFAULT_CHUNK_BYTES
    );
}
