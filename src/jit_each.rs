//! The simple strategy: one Cranelift function per code object through cranelift-jit.
//!
//! It compiles and finalizes (at least one fresh page) per slot; it exists as the baseline
//! the benchmarks compare stamping against, and as a cross-check that both make equal code.

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};

use crate::compile_error::CompileError;
use crate::compiler::{self, Target};
use crate::slots::{Slot, SlotError, SlotSource};

/// Compiles one trampoline per slot with cranelift-jit.
pub struct CompileEach {
    module: JITModule,
    isa: OwnedTargetIsa,
    ctx: cranelift_codegen::Context,
    count: u64,
    code_bytes: usize,
}

// SAFETY: JITModule holds raw pointers to memory it owns outright; nothing in it is tied to
// the thread that created it, and we only ever use it behind `&mut`.
unsafe impl Send for CompileEach {}

fn jit_err(e: cranelift_module::ModuleError) -> SlotError {
    SlotError::Compile(CompileError::cranelift(
        "compiling a trampoline with cranelift-jit",
        e,
    ))
}

impl CompileEach {
    /// A source for the host ISA.
    pub fn new() -> Result<CompileEach, CompileError> {
        let isa = compiler::target_isa(&Target::Host)?;
        let builder = JITBuilder::with_isa(isa.clone(), cranelift_module::default_libcall_names());
        let module = JITModule::new(builder);
        let ctx = module.make_context();
        Ok(CompileEach {
            module,
            isa,
            ctx,
            count: 0,
            code_bytes: 0,
        })
    }
}

impl SlotSource for CompileEach {
    /// The code's own bytes: cranelift-jit's page-granular allocations are not visible here.
    fn memory_bytes(&self) -> usize {
        self.code_bytes
    }

    fn next_slot(&mut self) -> Result<Slot, SlotError> {
        self.ctx.clear();
        self.ctx.func = compiler::build_function(&*self.isa);
        let name = format!("perf_trampoline_{}", self.count);
        self.count += 1;
        let id = self
            .module
            .declare_function(&name, Linkage::Local, &self.ctx.func.signature)
            .map_err(jit_err)?;
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(jit_err)?;
        let size = self
            .ctx
            .compiled_code()
            .map_or(0, |c| c.code_buffer().len());
        self.module.finalize_definitions().map_err(jit_err)?;
        let addr = self.module.get_finalized_function(id) as usize;
        self.code_bytes += size;
        Ok(Slot { addr, size })
    }

    /// Nothing to do: cranelift-jit's default memory provider maps fresh memory for every
    /// finalized function, so each slot lies in a mapping made by the process that asked for it.
    fn after_fork(&mut self) {}
}
