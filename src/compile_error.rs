//! Why a template could not be built or described: kept apart from the compiler, which only
//! builds with Cranelift (feature `compile`), because the slot sources report it either way.

use std::fmt;

use crate::isa::Isa;

/// Why a template could not be built.
#[derive(Debug)]
pub enum CompileError {
    /// The triple is not one of the ISAs in [`Isa::ALL`] on Linux, or Cranelift lacks it.
    UnsupportedTarget(String),
    /// Cranelift refused a setting, the function or a module operation (a bug on our side):
    /// what we asked of it, and its error.
    Cranelift {
        /// What we asked of Cranelift.
        doing: &'static str,
        /// Cranelift's error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing or reading unwind sections failed in gimli: what we were doing, and its error.
    Unwind {
        /// What we were doing.
        doing: &'static str,
        /// gimli's error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Cranelift made code of another shape than the one we describe (a new Cranelift, or a
    /// bug of ours): the text says where.
    UnexpectedCode(String),
}

impl CompileError {
    /// Cranelift's error `cause` while `doing` something.
    pub fn cranelift(
        doing: &'static str,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> CompileError {
        CompileError::Cranelift {
            doing,
            cause: cause.into(),
        }
    }

    /// gimli's error `cause` while `doing` something with unwind sections.
    pub fn unwind(
        doing: &'static str,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> CompileError {
        CompileError::Unwind {
            doing,
            cause: cause.into(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::UnsupportedTarget(t) => {
                let arches: Vec<&str> = Isa::ALL.iter().map(|i| i.triple_name()).collect();
                write!(
                    f,
                    "unsupported target {t:?}: perf-trampoline builds for {}-unknown-linux-gnu",
                    arches.join("/")
                )
            }
            CompileError::Cranelift { doing, cause } => write!(f, "cranelift: {doing}: {cause}"),
            CompileError::Unwind { doing, cause } => write!(f, "unwind info: {doing}: {cause}"),
            CompileError::UnexpectedCode(m) => write!(f, "unexpected trampoline code: {m}"),
        }
    }
}

impl std::error::Error for CompileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CompileError::Cranelift { cause, .. } | CompileError::Unwind { cause, .. } => {
                Some(&**cause)
            }
            CompileError::UnsupportedTarget(_) | CompileError::UnexpectedCode(_) => None,
        }
    }
}
