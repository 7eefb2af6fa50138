//! Applies a plan step by step, keeping an undo log. Any failure, or a cancellation
//! between steps (Ctrl-C), undoes everything done so far in reverse order, the failing
//! step included, so a failed `up` leaves nothing behind.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Kernel, KernelError};
use crate::plan::{Plan, Step};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{cause}{}", undo_note(.undo_errors))]
    Failed {
        cause: KernelError,
        undo_errors: Vec<KernelError>,
    },
    #[error("interrupted; everything created so far was removed{}", undo_note(.undo_errors))]
    Interrupted { undo_errors: Vec<KernelError> },
}

fn undo_note(errors: &[KernelError]) -> String {
    match errors.first() {
        None => String::new(),
        Some(first) => format!(" (and {} cleanup error(s), first: {first})", errors.len()),
    }
}

/// Applies every step of `plan`; on failure or cancellation rolls back and reports.
pub async fn apply<K: Kernel>(
    kernel: &mut K,
    plan: &Plan,
    cancel: &AtomicBool,
) -> Result<(), ExecError> {
    let mut done: Vec<&Step> = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        if cancel.load(Ordering::SeqCst) {
            let undo_errors = rollback(kernel, &done).await;
            return Err(ExecError::Interrupted { undo_errors });
        }
        if let Err(cause) = kernel.apply(step).await {
            // The failing step may have half-happened (a veth with one end made).
            done.push(step);
            let undo_errors = rollback(kernel, &done).await;
            return Err(ExecError::Failed { cause, undo_errors });
        }
        done.push(step);
    }
    Ok(())
}

/// Undoes `done` in reverse, going on past errors and returning all of them.
pub async fn rollback<K: Kernel>(kernel: &mut K, done: &[&Step]) -> Vec<KernelError> {
    let mut errors = Vec::new();
    for step in done.iter().rev() {
        if let Err(e) = kernel.undo(step).await {
            errors.push(e);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::RecordingKernel;
    use crate::topology::Topology;

    fn run(kernel: &mut RecordingKernel, cancel: bool) -> Result<(), ExecError> {
        let plan = crate::plan::build(&Topology::builtin());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(apply(kernel, &plan, &AtomicBool::new(cancel)))
    }

    #[test]
    fn applies_every_step_in_order() {
        let mut kernel = RecordingKernel::default();
        run(&mut kernel, false).unwrap();
        let plan = crate::plan::build(&Topology::builtin());
        let expected: Vec<String> = plan
            .steps
            .iter()
            .map(|s| format!("apply {}", s.describe()))
            .collect();
        assert_eq!(kernel.calls, expected);
    }

    #[test]
    fn failure_undoes_everything_including_the_failing_step() {
        let mut kernel = RecordingKernel::failing_at(14);
        let err = run(&mut kernel, false).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        insta::assert_yaml_snapshot!(kernel.calls);
    }

    #[test]
    fn cancellation_before_a_step_undoes_nothing_more_than_was_done() {
        let mut kernel = RecordingKernel::default();
        let err = run(&mut kernel, true).unwrap_err();
        assert!(matches!(err, ExecError::Interrupted { .. }));
        assert!(kernel.calls.is_empty());
    }
}
