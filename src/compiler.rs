//! Cranelift: builds the call-through template for a target ISA (code, unwind info, disassembly).
//!
//! The template is `fn(tstate, frame, throwflag: i32, eval) -> result` and its whole body is
//! `return eval(tstate, frame, throwflag)`, compiled as a real call (never a tail call) inside
//! a frame record, so every copy of it shows up as one frame in perf's stack walks.

use std::fmt;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{self, AbiParam, InstBuilder, UserFuncName, types};
use cranelift_codegen::isa::unwind::UnwindInfo;
use cranelift_codegen::isa::{self, CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use target_lexicon::Triple;

use crate::compile_error::CompileError;
use crate::isa::Isa;

/// The ISA to compile for: the machine we run on, or a named Linux triple.
#[derive(Clone, Debug)]
pub enum Target {
    /// The machine we run on.
    Host,
    /// A Linux triple of a supported ISA.
    Triple(Triple),
}

impl Target {
    /// Parses a triple such as `aarch64-unknown-linux-gnu` (only Linux triples of the four
    /// supported ISAs are accepted).
    pub fn parse(triple: &str) -> Result<Target, CompileError> {
        let t: Triple = triple
            .parse()
            .map_err(|_| CompileError::UnsupportedTarget(triple.to_string()))?;
        if Isa::of(t.architecture).is_none()
            || t.operating_system != target_lexicon::OperatingSystem::Linux
        {
            return Err(CompileError::UnsupportedTarget(triple.to_string()));
        }
        Ok(Target::Triple(t))
    }
}

/// The compiled call-through function.
pub struct Template {
    /// Machine code; position independent (no relocations), so it can be copied anywhere.
    pub code: Vec<u8>,
    /// Cranelift's description of how the prologue and epilogue move the CFA.
    pub unwind: cranelift_codegen::isa::unwind::systemv::UnwindInfo,
    /// Offset of the return address of the one call, i.e. just past the call instruction.
    pub call_return_offset: u32,
    /// Cranelift's disassembly of the machine code, when asked for.
    pub disassembly: Option<String>,
    /// The ISA the code is for; needed again to turn `unwind` into `.eh_frame`.
    pub isa: OwnedTargetIsa,
    /// Which of ours that ISA is.
    pub arch: Isa,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("triple", &self.isa.triple().to_string())
            .field("code_len", &self.code.len())
            .finish_non_exhaustive()
    }
}

/// Builds the ISA with the settings every trampoline needs: a frame record in every
/// function and unwind info, whatever the target's defaults are.
pub fn target_isa(target: &Target) -> Result<OwnedTargetIsa, CompileError> {
    let mut flags = settings::builder();
    for (name, value) in [
        ("preserve_frame_pointers", "true"),
        ("unwind_info", "true"),
        ("opt_level", "speed"),
    ] {
        flags
            .set(name, value)
            .map_err(|e| CompileError::cranelift("setting a flag", e))?;
    }
    let mut builder = match target {
        Target::Host => cranelift_native::builder()
            .map_err(|e| CompileError::UnsupportedTarget(format!("host: {e}")))?,
        Target::Triple(t) => isa::lookup(t.clone())
            .map_err(|e| CompileError::UnsupportedTarget(format!("{t}: {e}")))?,
    };
    // On a riscv64 host with the C extension Cranelift would compress the prologue, and
    // `abi_fixups` patches the 4-byte `mv s0, sp`: keep the template uncompressed, as on
    // every riscv64 target (found running the extension under qemu-riscv64, isa-tests/).
    if Isa::of(builder.triple().architecture) == Some(Isa::Riscv64) {
        for name in ["has_zca", "has_zcb", "has_zcd"] {
            builder
                .set(name, "false")
                .map_err(|e| CompileError::cranelift("setting a flag", e))?;
        }
    }
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| CompileError::cranelift("building the ISA", e))
}

/// The C signature of CPython's frame evaluator, `(tstate, frame, throwflag) -> PyObject*`,
/// with or without the trailing `eval` pointer the trampoline receives.
fn eval_signature(isa: &dyn isa::TargetIsa, with_eval_arg: bool) -> ir::Signature {
    let ptr = isa.pointer_type();
    let mut sig = ir::Signature::new(CallConv::triple_default(isa.triple()));
    // `int throwflag` is a signed C int: riscv64 and s390x want it sign-extended to 64 bits
    // in the register. (Cranelift's `default_argument_extension` is Wasmtime's convention,
    // zero-extension on s390x, which is not the C ABI, so we do not use it.)
    let int = AbiParam::new(types::I32).sext();
    sig.params
        .extend([AbiParam::new(ptr), AbiParam::new(ptr), int]);
    if with_eval_arg {
        sig.params.push(AbiParam::new(ptr));
    }
    sig.returns.push(AbiParam::new(ptr));
    sig
}

/// Writes the trampoline's IR into `func`: call the 4th argument with the first three.
pub fn build_function(isa: &dyn isa::TargetIsa) -> ir::Function {
    let mut func =
        ir::Function::with_name_signature(UserFuncName::user(0, 0), eval_signature(isa, true));
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let args = b.block_params(block).to_vec();
    let callee_sig = b.import_signature(eval_signature(isa, false));
    // `call_indirect` + `return`, not `return_call_indirect`: a tail call would pop our frame
    // before the evaluator runs, and the frame is the whole point.
    let call = b.ins().call_indirect(callee_sig, args[3], &args[..3]);
    let result = b.inst_results(call)[0];
    b.ins().return_(&[result]);
    b.finalize(isa.frontend_config());
    func
}

/// riscv64: Cranelift sets `s0` to the stack pointer after pushing {ra, s0}, so it points at
/// the saved `s0`. The psABI, GCC, LLVM and the kernel's perf stack walker want `s0` to be the
/// frame's CFA, with {ra, s0} just below it; with Cranelift's value a frame-pointer walk stops
/// at the first trampoline (wasmtime#10281). The body and epilogue address the frame through
/// `sp`, so moving `s0` up by 16 changes nothing else. (`unwind.rs` describes the new `s0`.)
const RISCV_MV_S0_SP: [u8; 4] = [0x13, 0x04, 0x01, 0x00]; // addi s0, sp, 0
const RISCV_S0_IS_CFA: [u8; 4] = [0x13, 0x04, 0x01, 0x01]; // addi s0, sp, 16

fn abi_fixups(
    arch: Isa,
    code: &mut [u8],
    disassembly: Option<&mut String>,
) -> Result<(), CompileError> {
    if arch == Isa::Riscv64 {
        let at = code
            .chunks_exact(4)
            .position(|insn| insn == RISCV_MV_S0_SP)
            .ok_or_else(|| {
                CompileError::UnexpectedCode(
                    "riscv64 prologue without `mv s0, sp`; cannot fix its frame pointer".into(),
                )
            })?;
        code[at * 4..at * 4 + 4].copy_from_slice(&RISCV_S0_IS_CFA);
        if let Some(text) = disassembly {
            *text = text.replacen(
                "mv fp,sp",
                "addi fp,sp,16  ; patched: fp = CFA, as the psABI wants",
                1,
            );
        }
    }
    Ok(())
}

/// Compiles the trampoline template for `target`.
pub fn compile(target: &Target, want_disassembly: bool) -> Result<Template, CompileError> {
    let isa = target_isa(target)?;
    let triple = isa.triple();
    let arch = Isa::of(triple.architecture)
        .ok_or_else(|| CompileError::UnsupportedTarget(triple.to_string()))?;
    let mut ctx = cranelift_codegen::Context::for_function(build_function(&*isa));
    ctx.set_disasm(want_disassembly);
    let compiled = ctx
        .compile(&*isa, &mut ControlPlane::default())
        .map_err(|e| CompileError::cranelift("compiling the template", e.inner))?;
    if !compiled.buffer.relocs().is_empty() {
        return Err(CompileError::UnexpectedCode(
            "template has relocations; it must be position independent".into(),
        ));
    }
    let mut code = compiled.code_buffer().to_vec();
    let mut disassembly = compiled.vcode.clone();
    abi_fixups(arch, &mut code, disassembly.as_mut())?;
    let call_return_offset = match compiled
        .buffer
        .call_sites()
        .map(|c| c.ret_addr)
        .collect::<Vec<_>>()[..]
    {
        [one] => one,
        ref other => {
            return Err(CompileError::UnexpectedCode(format!(
                "expected exactly one call, found {}",
                other.len()
            )));
        }
    };
    let unwind = match compiled
        .create_unwind_info(&*isa)
        .map_err(|e| CompileError::cranelift("making unwind info", e))?
    {
        Some(UnwindInfo::SystemV(info)) => info,
        other => {
            return Err(CompileError::UnexpectedCode(format!(
                "expected SystemV unwind info, got {other:?}"
            )));
        }
    };
    Ok(Template {
        code,
        unwind,
        call_return_offset,
        disassembly,
        isa,
        arch,
    })
}
