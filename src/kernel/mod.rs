//! The kernel behind a narrow trait: [`Kernel::apply`] creates what one plan step says and
//! [`Kernel::undo`] removes it. [`netlink::NetlinkKernel`] does it for real;
//! [`fake::RecordingKernel`] records the calls so the order of operations is testable
//! without root. [`executor`] applies a whole plan with an undo log.

pub mod executor;
pub mod fake;
pub mod netem;
pub mod netlink;
pub mod netns;
pub mod packets;
pub mod privileges;
pub mod tbf;

use crate::plan::Step;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A step failed; `cause` is the kernel's answer in words.
    #[error("{step}: {cause}")]
    Step { step: String, cause: String },
}

impl KernelError {
    pub fn step(step: &Step, cause: impl std::fmt::Display) -> Self {
        KernelError::Step {
            step: step.describe(),
            cause: cause.to_string(),
        }
    }
}

/// Creates and removes the kernel objects of plan steps.
// Steps run one at a time on one thread, so the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait Kernel {
    /// Creates what `step` describes.
    async fn apply(&mut self, step: &Step) -> Result<(), KernelError>;
    /// Removes what `step` created; something already gone counts as removed.
    async fn undo(&mut self, step: &Step) -> Result<(), KernelError>;
}
