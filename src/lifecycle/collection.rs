//! Job collections: jobs that run one after another, in `runOrder`. When a job fails (any
//! end but `FinishedSuccess`, or refused before it ran), its `onFailure` decides: `Abort`
//! leaves the rest of the collection unrun, `Continue` goes on with the next job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::{Job, LifecycleError, OnFailure, RunId, Runner, Trigger};
use crate::report::{Report, RunStatus};

/// Jobs that run in order.
#[derive(Debug, Clone)]
pub struct Collection {
    /// The collection's name.
    pub name: String,
    /// Its jobs; they run by their settings' `run_order` (lowest first; ties keep this order).
    pub jobs: Vec<Arc<Job>>,
}

/// What became of one job of a collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
#[non_exhaustive]
pub enum StepOutcome {
    /// It ran; its report.
    Finished {
        /// The run.
        run: u64,
        /// Its report.
        report: Box<Report>,
    },
    /// It could not start (parameters, already running, state).
    Refused {
        /// Why.
        error: String,
    },
    /// An earlier job failed with `onFailure` `Abort`, or the collection was stopped.
    NotRun,
}

/// One job of a collection run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionStep {
    /// The job.
    pub job_name: String,
    /// Its `runOrder`.
    pub run_order: i64,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: StepOutcome,
}

impl CollectionStep {
    /// True when the job ran and finished with success.
    pub fn succeeded(&self) -> bool {
        matches!(&self.outcome, StepOutcome::Finished { report, .. } if report.status == RunStatus::FinishedSuccess)
    }
}

/// What a collection run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionReport {
    /// The collection.
    pub name: String,
    /// Every job, in the order they ran (or would have).
    pub steps: Vec<CollectionStep>,
    /// The job whose failure stopped the collection, if one did.
    pub aborted_by: Option<String>,
    /// True when the collection was told to stop before its last job started.
    pub stopped: bool,
}

impl Runner {
    /// Runs the jobs of `collection` one after another, in `runOrder`, each with its
    /// parameters' defaults, and blocks until the last has finished. Each run is an ordinary
    /// run of the runner: its status, cancel and history work as for any other.
    pub fn run_collection(&self, collection: &Collection) -> CollectionReport {
        self.run_collection_until(collection, &AtomicBool::new(false))
    }

    /// [`run_collection`](Self::run_collection) that starts no further job once `stop` is
    /// set (the job under way finishes; the rest are `NotRun`). A scheduler that is shut down
    /// uses it.
    pub fn run_collection_until(
        &self,
        collection: &Collection,
        stop: &AtomicBool,
    ) -> CollectionReport {
        let mut stopped = false;
        let mut jobs: Vec<&Arc<Job>> = collection.jobs.iter().collect();
        jobs.sort_by_key(|j| j.settings.run_order);
        let mut steps = Vec::with_capacity(jobs.len());
        let mut aborted_by = None;
        for job in jobs {
            let job_name = job.name();
            let run_order = job.settings.run_order;
            if aborted_by.is_none() && !stopped && stop.load(Ordering::SeqCst) {
                stopped = true;
            }
            if aborted_by.is_some() || stopped {
                steps.push(CollectionStep {
                    job_name,
                    run_order,
                    outcome: StepOutcome::NotRun,
                });
                continue;
            }
            let outcome =
                match self.start(job.clone(), &Default::default(), Trigger::Collection, None) {
                    Ok(id) => self.finished(id),
                    Err(e) => refused(&e),
                };
            let step = CollectionStep {
                job_name,
                run_order,
                outcome,
            };
            if !step.succeeded() && job.settings.on_failure == OnFailure::Abort {
                aborted_by = Some(step.job_name.clone());
            }
            steps.push(step);
        }
        CollectionReport {
            name: collection.name.clone(),
            steps,
            aborted_by,
            stopped,
        }
    }

    fn finished(&self, id: RunId) -> StepOutcome {
        match self.wait(id) {
            Some(report) => StepOutcome::Finished {
                run: id.0,
                report: Box::new(report),
            },
            None => StepOutcome::Refused {
                error: format!("run {id} was forgotten before it finished"),
            },
        }
    }
}

fn refused(e: &LifecycleError) -> StepOutcome {
    StepOutcome::Refused {
        error: e.to_string(),
    }
}
