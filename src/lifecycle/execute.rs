//! One run of a job: its attempts with retries and a time-out, the delta watermark saved after
//! a success, and the notification.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::history::execution;
use super::{Job, NotifyWhen, RunId, Runner, TaskStatus, Watermarks};
use crate::engine::{RunControl, StopReason};
use crate::hooks::Notification;
use crate::report::{DetailType, Report, RunStatus};
use crate::{Error, Plan, RunOptions};

impl Runner {
    /// Runs `run` to its end on this (background) thread: its attempts, the watermark, the
    /// notification, then the finished state.
    pub(super) fn execute(&self, id: RunId, run: Prepared) {
        let Prepared {
            job,
            plan,
            parameters,
            watermarks,
        } = run;
        let clock = &self.0.clock;
        let settings = &job.settings;
        let retry = settings.retry_policy();
        let max_retries = retry.attempts - 1;
        let mut attempt = 0;
        let mut control;
        let (mut report, started, stopped) = loop {
            attempt += 1;
            control = match job.settings.task_session_timeout.filter(|m| *m > 0) {
                Some(minutes) => RunControl::with_deadline(
                    clock.clone(),
                    clock.now() + chrono::Duration::minutes(i64::from(minutes)),
                ),
                None => RunControl::default(),
            };
            let started = clock.now();
            // A cancel that came while queued or between attempts carries over.
            let cancelled = {
                let mut reg = self.lock();
                let run = reg.runs.get_mut(&id);
                let cancelled = run
                    .as_ref()
                    .is_some_and(|r| r.control.stop_reason() == Some(StopReason::Cancelled));
                if cancelled {
                    control.cancel();
                }
                if let Some(r) = run {
                    r.attempt = attempt;
                    r.started = true;
                    r.started_at.get_or_insert(started);
                    r.control = control.clone();
                }
                cancelled
            };
            self.0.changed.notify_all();
            let result = if cancelled {
                Err(None)
            } else {
                self.attempt(&job, &plan, &parameters, &control, &watermarks)
                    .map_err(Some)
            };
            let stopped = clock.now();
            let mut report = match result {
                Ok(report) => report,
                Err(None) => {
                    let mut r = Report::new(&plan.name, settings.dry_run);
                    r.status = RunStatus::Aborted;
                    r.detail(
                        DetailType::Warning,
                        if attempt == 1 {
                            "the run was cancelled before it started: nothing was read or written"
                        } else {
                            "the run was cancelled while it waited to retry: no further attempt was made"
                        },
                    );
                    r
                }
                Err(Some(e)) => {
                    let transient = e.is_transient();
                    let r = Report::from_error(&plan.name, settings.dry_run, &e);
                    if transient && attempt <= max_retries {
                        let exec = execution(id, attempt, TaskStatus::Retry, &r, started, stopped);
                        self.update(id, |run| run.executions.push(exec));
                        // Waited in steps, so that a cancel does not wait out the backoff.
                        let until = chrono::Duration::from_std(retry.wait(attempt))
                            .ok()
                            .and_then(|w| clock.now().checked_add_signed(w))
                            .unwrap_or(DateTime::<Utc>::MAX_UTC);
                        while control.stop_reason() != Some(StopReason::Cancelled) {
                            let left = (until - clock.now()).to_std().unwrap_or(Duration::ZERO);
                            if left.is_zero() {
                                break;
                            }
                            clock.sleep(left.min(Duration::from_secs(1)));
                        }
                        continue;
                    }
                    r
                }
            };
            report.start_time = crate::clock::iso(started);
            report.stop_time = crate::clock::iso(stopped);
            report.duration = (stopped - started).num_milliseconds().max(0) as u64;
            break (report, started, stopped);
        };

        // A successful delta run moves the watermark on; any other keeps the old one, so
        // the rows it missed are taken again next time.
        if report.status == RunStatus::FinishedSuccess
            && !report.dry_run
            && !report.watermarks.is_empty()
            && let Some(store) = &self.0.store
        {
            let marks: Watermarks = report
                .watermarks
                .iter()
                .filter_map(|(k, v)| k.parse().ok().map(|k| (k, v.clone())))
                .collect();
            if let Err(e) = store.save(&plan.name, &marks) {
                report.detail(
                    DetailType::Error,
                    format!("the delta watermark could not be saved: {e}"),
                );
                report.status = RunStatus::FinishedFail;
            }
        }
        let exec = execution(id, attempt, report.status.into(), &report, started, stopped);
        let timed_out = control.stop_reason() == Some(StopReason::TimedOut);
        let reasons = notification_reasons(&settings.notify, &report, timed_out);
        if !reasons.is_empty() {
            let job_name = job.name();
            let notification = Notification {
                job: &job_name,
                run: id.0,
                reasons: &reasons,
                report: &report,
            };
            // A notifier that panics must not leave the run unfinished.
            let notified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job.hooks.notify(&notification)
            }));
            if notified.is_err() {
                report.detail(DetailType::Warning, "the notification hook panicked");
            }
        }
        self.finish(id, report, vec![exec]);
    }

    /// One attempt. Its control times it out on the runner's clock, checked before each row.
    fn attempt(
        &self,
        job: &Job,
        plan: &Plan,
        parameters: &BTreeMap<String, String>,
        control: &RunControl,
        watermarks: &Watermarks,
    ) -> Result<Report, Error> {
        let options = RunOptions {
            threads: job.settings.threads,
            dry_run: job.settings.dry_run,
            control: Some(control.clone()),
            parameters: parameters.clone(),
            watermarks: watermarks.clone(),
            limits: job.settings.source_limits,
        };
        (job.source)()
            .map_err(|source| Error::Source {
                job: plan.name.clone(),
                object_type: plan.objects.first().map_or(1, |o| o.object_type.code()),
                field: None,
                source: Box::new(source),
            })
            .and_then(|mut source| {
                crate::run(
                    plan,
                    source.as_mut(),
                    job.destination.as_ref(),
                    job.hooks.as_ref(),
                    &options,
                )
            })
    }
}

/// What a run needs that was settled at submit time.
pub(super) struct Prepared {
    pub(super) job: Arc<Job>,
    pub(super) plan: Plan,
    pub(super) parameters: BTreeMap<String, String>,
    pub(super) watermarks: Watermarks,
}

/// The job's rules that `report` meets.
fn notification_reasons(rules: &[NotifyWhen], report: &Report, timed_out: bool) -> Vec<NotifyWhen> {
    rules
        .iter()
        .copied()
        .filter(|rule| match rule {
            NotifyWhen::Always => true,
            NotifyWhen::RecordsUpdated => {
                let updated = report.added.len() + report.modified.len() + report.deleted.len();
                !report.dry_run && updated > 0
            }
            NotifyWhen::Errors => {
                !report.failed.is_empty()
                    || !report.delete_failed.is_empty()
                    || report.details.iter().any(|d| d.details_type == 0)
            }
            NotifyWhen::JobFailed => {
                matches!(report.status, RunStatus::FinishedFail | RunStatus::Error)
                    || (report.status == RunStatus::Aborted && timed_out)
            }
        })
        .collect()
}
