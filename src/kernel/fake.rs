//! A kernel that only records what it was asked to do, and can be told to fail.

use super::{Kernel, KernelError};
use crate::plan::Step;

#[derive(Debug, Default)]
pub struct RecordingKernel {
    /// `apply <step>` and `undo <step>` lines, in call order.
    pub calls: Vec<String>,
    /// Fail the apply call with this 0-based number.
    pub fail_at: Option<usize>,
    applies: usize,
}

impl RecordingKernel {
    pub fn failing_at(apply_number: usize) -> Self {
        RecordingKernel {
            fail_at: Some(apply_number),
            ..Default::default()
        }
    }
}

impl Kernel for RecordingKernel {
    async fn apply(&mut self, step: &Step) -> Result<(), KernelError> {
        self.calls.push(format!("apply {}", step.describe()));
        let n = self.applies;
        self.applies += 1;
        if self.fail_at == Some(n) {
            return Err(KernelError::step(step, "injected failure"));
        }
        Ok(())
    }

    async fn undo(&mut self, step: &Step) -> Result<(), KernelError> {
        self.calls.push(format!("undo {}", step.describe()));
        Ok(())
    }
}
