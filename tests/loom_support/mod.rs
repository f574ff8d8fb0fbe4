//! Shared by the loom model files.

/// Runs `f` under loom with at most `preemptions` preempted context switches per execution
/// (`None`: unbounded), unless `LOOM_MAX_PREEMPTIONS` says otherwise, so that each model
/// stays within seconds in release mode.
pub(crate) fn model<F>(preemptions: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }
    builder.check(f);
}
