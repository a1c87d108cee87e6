//! perf-trampoline: makes Python functions visible to Linux `perf`.
//!
//! ```text
//! activate(backend) ─► template {code and jitdump unwind sections, both prebuilt}
//!                                                       │
//! Python call ─► eval hook ─► code object ─► slot in co_extra? ── no: SlotSource::next_slot()
//!                                 │                                   Registry::record(slot, name)
//!                                 ▼                                     └─ perf map sink
//!                  trampoline(tstate, frame, throw, eval) ─► eval(tstate, frame, throw)
//! ```
//!
//! Every code object gets its own copy of one tiny call-through function at its own address,
//! so a stack walk through CPython shows one native frame per Python frame, and the perf map
//! tells perf the Python name of each address.

#![deny(missing_docs)]

mod arena;
mod compile_error;
// Cranelift at run time (feature `compile`): the wheel's module stamps the prebuilt template.
#[cfg(feature = "compile")]
mod compiler;
mod compose;
// CPython knowledge the extension alone uses; built without it too, so its tests run.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod frame_layout;
mod isa;
#[cfg(feature = "compile")]
mod jit_each;
mod jit_template;
mod os;
mod prebuilt;
// The unwinder `perf-trampoline record/report` uses through the extension; built without it
// too (a default feature), so its tests run.
#[cfg(feature = "perf-unwind")]
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod perfdata;
// Injection of only the jitted functions a recording reaches, for `perf-trampoline inject`.
#[cfg(feature = "perf-unwind")]
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod inject;
// The samples model and the output formats `record/report` write (Firefox, speedscope, pprof).
#[cfg(feature = "perf-unwind")]
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod profile;
#[cfg(feature = "python")]
mod python;
mod registry;
mod slots;
#[cfg(feature = "compile")]
mod unwind;

pub use arena::{DEFAULT_CHUNK_BYTES, FIRST_CHUNK_BYTES, READ_SLACK, StampArena};
pub use compile_error::CompileError;
#[cfg(feature = "compile")]
pub use compiler::{Target, Template, build_function, compile, target_isa};
pub use compose::UnknownName;
pub use compose::backend::{Backends, open_sink};
#[cfg(feature = "compile")]
pub use compose::strategy::host_source;
pub use compose::strategy::{Strategy, source_for};
pub use isa::{Isa, SLOT_ALIGN};
#[cfg(feature = "compile")]
pub use jit_each::CompileEach;
pub use jit_template::{JitTemplate, JitUnwind};
pub use prebuilt::{
    code as prebuilt_code, host_code as prebuilt_host_code, jit_template as prebuilt_jit_template,
};
pub use registry::name::{MAX_NAME_BYTES, clean as clean_name};
pub use registry::stale::process_start;
pub use registry::{
    OpenError, OutputKind, OwnedSymbol, Registry, Sink, Symbol, Writers, output_dir,
};
pub use slots::{EvalFn, Slot, SlotError, SlotSource, Trampoline};
#[cfg(feature = "compile")]
pub use unwind::{eh_frame, endianness, jit_template, jitdump_unwind};

/// The perf map sink and its line format.
pub mod perf_map {
    pub use crate::registry::perf_map::{PerfMap, format_line, parse_line};
}

/// The jitdump: its sink, its format, and a reader.
pub mod jitdump {
    pub use crate::registry::jitdump::{JitDump, SALT_LEN, dumped_code_size, min_stride};
    pub use crate::registry::jitdump_format::Header;
    pub use crate::registry::jitdump_read::{Dump, ReadError, Record, parse};
}
