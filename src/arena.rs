//! Executable memory: chunks of stamped template copies, W^X, icache coherence, never reused.

use std::fmt;
use std::io;
use std::ptr;

use crate::isa::{Isa, SLOT_ALIGN};
use crate::os::page_size;
use crate::slots::{Slot, SlotError, SlotSource};

/// How big a chunk is when the caller does not say (64 KiB: 4095 x86-64 slots).
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;

/// The first chunk, when the caller does not say: 16 KiB (1023 x86-64 slots) covers start-up
/// and small programs, and filling a chunk faults in every page of it (a page fault is 2-4 µs
/// here: twelve of them were about 2% of what turning support on at start-up cost).
pub const FIRST_CHUNK_BYTES: usize = 16 * 1024;

/// Bytes kept free at the end of every chunk. An unwinder without an FDE for a return
/// address reads a few bytes there to look for a signal-return sequence (libgcc on x86-64
/// reads 9); past the last copy of a chunk that read must still hit mapped memory.
pub const READ_SLACK: usize = 16;

/// `bytes` rounded up to room for one copy at `stride` and the read slack, then to whole pages.
fn chunk_size(bytes: usize, stride: usize) -> usize {
    bytes.max(stride + READ_SLACK).next_multiple_of(page_size())
}

/// Copies of one template, handed out one address at a time.
///
/// A chunk is mapped read-write, filled with copies at a fixed stride, then switched to
/// read-execute (never both at once) before any slot in it is handed out. Slots are taken by
/// bumping a pointer, so an address is never handed out twice. Chunks are deliberately never
/// unmapped when the arena is dropped: a thread may still be inside a copy, or about to return
/// into one (CPython crashed exactly there, gh-112367). [`StampArena::release`] unmaps them for
/// callers that can prove no code runs there any more.
pub struct StampArena {
    template: Vec<u8>,
    stride: usize,
    first_chunk_bytes: usize,
    chunk_bytes: usize,
    /// Upper bound on all chunks together; `None` means no limit.
    budget: Option<usize>,
    /// Where the next chunk should go if that address range is free (0: anywhere).
    hint: usize,
    chunks: Vec<(usize, usize)>,
    next: usize,
    end: usize,
}

impl fmt::Debug for StampArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StampArena")
            .field("stride", &self.stride)
            .field("chunks", &self.chunks.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl StampArena {
    /// An arena for `template`, whose copies start `stride` bytes apart (at least the code's
    /// length, rounded up to [`SLOT_ALIGN`] so every copy is well aligned for any ISA we support).
    pub fn new(template: &[u8], min_stride: usize) -> StampArena {
        let stride = min_stride
            .max(template.len())
            .max(1)
            .next_multiple_of(SLOT_ALIGN);
        StampArena {
            template: template.to_vec(),
            stride,
            first_chunk_bytes: chunk_size(FIRST_CHUNK_BYTES, stride),
            chunk_bytes: chunk_size(DEFAULT_CHUNK_BYTES, stride),
            budget: None,
            hint: 0,
            chunks: Vec::new(),
            next: 0,
            end: 0,
        }
    }

    /// Sets the size of every chunk, the first too (rounded up to whole pages and to at least
    /// one slot).
    pub fn with_chunk_bytes(mut self, bytes: usize) -> StampArena {
        self.chunk_bytes = chunk_size(bytes, self.stride);
        self.first_chunk_bytes = self.chunk_bytes;
        self
    }

    /// Caps the executable memory this arena may map; past it `next_slot` fails with
    /// [`SlotError::Exhausted`].
    pub fn with_budget(mut self, bytes: Option<usize>) -> StampArena {
        self.budget = bytes;
        self
    }

    /// Asks for chunks close to `near` (the code the trampolines call, i.e. CPython's
    /// evaluator): a call or return across more than 2 GiB costs a measurable part of a
    /// trampoline call on x86-64 (0.6 ns of ~3 ns in benches/README.md). Only a hint: where the
    /// kernel has no room there, chunks go wherever it puts them.
    pub fn near(mut self, near: usize) -> StampArena {
        // 1 GiB below, then upwards; the odd offset avoids a power-of-two distance, at which
        // the two addresses alias in branch predictors (measured 16 ns per call at 2^28).
        self.hint = near.saturating_sub(1 << 30).next_multiple_of(page_size()) + 0x13_5000;
        self
    }

    /// Distance between two consecutive slots.
    pub fn stride(&self) -> usize {
        self.stride
    }

    fn map_chunk(&mut self) -> Result<(), SlotError> {
        let len = if self.chunks.is_empty() {
            self.first_chunk_bytes
        } else {
            self.chunk_bytes
        };
        if let Some(budget) = self.budget
            && self.memory_bytes() + len > budget
        {
            return Err(SlotError::Exhausted { budget });
        }
        // SAFETY: a fresh private anonymous mapping; we are its only user until it is published.
        let base = unsafe {
            libc::mmap(
                self.hint as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(SlotError::Os(io::Error::last_os_error()));
        }
        let mem = base.cast::<u8>();
        let copies = (len - READ_SLACK) / self.stride;
        // SAFETY: `mem` points at `len` writable bytes and copies * stride <= len.
        unsafe {
            ptr::write_bytes(mem, Isa::host().map_or(0, Isa::filler_byte), len);
            for i in 0..copies {
                ptr::copy_nonoverlapping(
                    self.template.as_ptr(),
                    mem.add(i * self.stride),
                    self.template.len(),
                );
            }
            if libc::mprotect(base, len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                let err = io::Error::last_os_error();
                libc::munmap(base, len);
                return Err(SlotError::Os(err));
            }
            wasmtime_jit_icache_coherence::clear_cache(base, len).map_err(SlotError::Os)?;
            wasmtime_jit_icache_coherence::pipeline_flush_mt().map_err(SlotError::Os)?;
        }
        self.chunks.push((mem as usize, len));
        if self.hint != 0 {
            self.hint = mem as usize + len;
        }
        self.next = mem as usize;
        self.end = mem as usize + copies * self.stride;
        Ok(())
    }

    /// Unmaps every chunk.
    ///
    /// # Safety
    /// No thread may be executing, or be about to return into, any slot of this arena.
    pub unsafe fn release(mut self) {
        for (base, len) in self.chunks.drain(..) {
            // SAFETY: the caller guarantees the code is dead; the range is one of our mappings.
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

impl SlotSource for StampArena {
    fn memory_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.1).sum()
    }

    /// The rest of the current chunk is left unused, and the next chunk is asked for one page
    /// past the last one: adjacent to an inherited chunk, the kernel could merge the two into
    /// one mapping, and perf would then take the inherited code for the child's own (named by
    /// the child's map, which need not hold the parent's names).
    fn after_fork(&mut self) {
        self.next = self.end;
        if let Some(&(base, len)) = self.chunks.last() {
            self.hint = base + len + page_size();
        }
    }

    fn next_slot(&mut self) -> Result<Slot, SlotError> {
        if self.next == self.end {
            self.map_chunk()?;
        }
        let addr = self.next;
        self.next += self.stride;
        Ok(Slot {
            addr,
            size: self.template.len(),
        })
    }
}
