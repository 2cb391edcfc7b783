//! A job as the lifecycle holds it: the job file, where it reads and writes, and how it is
//! run (retries, time-out, concurrency, schedule, collection order, notifications,
//! parameters). [`JobSettings::from_definition`] reads what the job file says about these.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::job::{self, DataSyncJob, JobError, JobErrors, parse_bool};
use crate::source::{Source, SourceError};
use crate::transform::TransformContext;
use crate::{Destination, Hooks, NoHooks, Plan};

use super::LifecycleError;
use super::parameters::{Parameters, resolve_parameters};
use super::schedule::Schedule;
use crate::hooks::NotifyWhen;

/// Opens the job's source afresh for each attempt.
pub type OpenSource = Box<dyn Fn() -> Result<Box<dyn Source + Send>, SourceError> + Send + Sync>;

/// A job the runner can run: the job file, where it reads and writes, and how it runs.
///
/// The plan is compiled for each run, so the run's parameter values reach `Static`'s
/// `%NAME%` variables.
pub struct Job {
    /// The job file, as loaded.
    pub definition: DataSyncJob,
    /// `%NAME%` values and script functions every run of the job has (a run's parameters
    /// are added to them).
    pub context: TransformContext,
    /// Opens the source (called once per attempt: a retry reads it again).
    pub source: OpenSource,
    /// The destination.
    pub destination: Arc<dyn Destination>,
    /// The host's hooks (row events and notifications).
    pub hooks: Arc<dyn Hooks + Send + Sync>,
    /// Retries, time-out, concurrency, schedule, parameters.
    pub settings: JobSettings,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job from its file, with the settings the file gives
    /// ([`JobSettings::from_definition`]) and no hooks. The job is compiled once here (with
    /// its parameters' defaults) so that a broken job is refused now, not at its first run.
    pub fn new(
        definition: DataSyncJob,
        source: OpenSource,
        destination: Arc<dyn Destination>,
    ) -> Result<Job, LifecycleError> {
        Job::new_in(definition, TransformContext::default(), source, destination)
    }

    /// [`new`](Self::new) compiled against `context` from the start: the host's script
    /// functions and fixed variables. A job whose field map uses `Script:name=…` is only whole
    /// with its scripts registered, so it cannot be made with `new` and given them after.
    pub fn new_in(
        definition: DataSyncJob,
        context: TransformContext,
        source: OpenSource,
        destination: Arc<dyn Destination>,
    ) -> Result<Job, LifecycleError> {
        let name = job::job_name(&definition);
        let settings =
            JobSettings::from_definition(&definition).map_err(|errors| LifecycleError::Job {
                job: name.clone(),
                errors,
            })?;
        let job = Job {
            definition,
            context,
            source,
            destination,
            hooks: Arc::new(NoHooks),
            settings,
        };
        job.check()?;
        Ok(job)
    }

    /// The same job with `hooks`.
    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks + Send + Sync>) -> Job {
        self.hooks = hooks;
        self
    }

    /// The same job compiled against `context` (script functions, fixed variables).
    pub fn with_context(mut self, context: TransformContext) -> Result<Job, LifecycleError> {
        self.context = context;
        self.check()?;
        Ok(self)
    }

    /// `jobInfo.name`.
    pub fn name(&self) -> String {
        job::job_name(&self.definition)
    }

    /// `jobInfo.collectionId`, as text (the product writes a number or a string; `null` is
    /// none): jobs that share one run as a collection (see `Scheduler::add_jobs`).
    pub fn collection_id(&self) -> Option<String> {
        self.definition
            .job_info
            .get()
            .and_then(|i| i.collection_id.get())
            .filter(|v| !v.is_null())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    }

    /// Checks `values` against the declared parameters and compiles the plan a run with them
    /// runs. Returns the plan and the checked values (for the hook context).
    pub fn plan(
        &self,
        values: &BTreeMap<String, String>,
    ) -> Result<(Plan, BTreeMap<String, String>), LifecycleError> {
        compile_with(
            &self.definition,
            &self.context,
            &self.settings.parameters,
            values,
        )
    }

    /// Compiles with every declared parameter set to its default, or to a stand-in when it
    /// has none (its value is only known at submit time).
    fn check(&self) -> Result<(), LifecycleError> {
        let mut context = self.context.clone();
        for (name, p) in &self.settings.parameters {
            let value = match &p.value {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) if !v.is_null() => v.to_string(),
                _ => format!("<{name}>"),
            };
            context.variables.entry(name.clone()).or_insert(value);
        }
        crate::plan::compile(&self.definition, &context).map_err(|errors| LifecycleError::Job {
            job: self.name(),
            errors,
        })?;
        Ok(())
    }
}

/// The plan a run of `definition` with the parameter `values` runs, compiled against
/// `context`, and the checked values: what [`Job::plan`] gives, before a [`Job`] exists. A host
/// that opens its destination from the plan (a table takes its columns from it) compiles first
/// and makes the job with the destination it opened, instead of a stand-in.
pub fn plan_for(
    definition: &DataSyncJob,
    context: &TransformContext,
    values: &BTreeMap<String, String>,
) -> Result<(Plan, BTreeMap<String, String>), LifecycleError> {
    let settings =
        JobSettings::from_definition(definition).map_err(|errors| LifecycleError::Job {
            job: job::job_name(definition),
            errors,
        })?;
    compile_with(definition, context, &settings.parameters, values)
}

/// Checks `values` against `parameters` and compiles with them as variables.
fn compile_with(
    definition: &DataSyncJob,
    context: &TransformContext,
    parameters: &Parameters,
    values: &BTreeMap<String, String>,
) -> Result<(Plan, BTreeMap<String, String>), LifecycleError> {
    let name = job::job_name(definition);
    let values =
        resolve_parameters(&name, parameters, values).map_err(LifecycleError::Parameters)?;
    let mut context = context.clone();
    context
        .variables
        .extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    let plan = crate::plan::compile(definition, &context)
        .map_err(|errors| LifecycleError::Job { job: name, errors })?;
    Ok((plan, values))
}

/// What a collection does after one of its jobs fails (`jobInfo.onFailure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// Stop: the rest of the collection does not run.
    #[default]
    Abort,
    /// Run the next job.
    Continue,
}

/// How the runner treats a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Runs that fail as a whole for a transient reason are tried again this many times
    /// (Qlik's `maxRetries`, OIG's `retryCount`). Row failures never retry a run.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles for each next one, up to 5 minutes.
    pub retry_wait: Duration,
    /// Minutes a run may take before it is stopped like a cancel (`taskSessionTimeout`;
    /// `None` or 0: no limit).
    pub task_session_timeout: Option<u32>,
    /// False: a run of this job is refused while another runs (`concurrent`).
    pub concurrent: bool,
    /// Worker threads (0: the engine decides).
    pub threads: usize,
    /// Compute the changes and the report, write nothing (no delta watermark is kept either).
    pub dry_run: bool,
    /// The declared parameters, with their defaults.
    pub parameters: Parameters,
    /// When a [`Scheduler`](super::Scheduler) starts the job.
    pub schedule: Option<Schedule>,
    /// Whether the schedule starts it (`jobInfo.enabled`).
    pub enabled: bool,
    /// In a collection: what happens after this job fails (`jobInfo.onFailure`).
    pub on_failure: OnFailure,
    /// In a collection: the job's place (`jobInfo.runOrder`, lowest first).
    pub run_order: i64,
    /// When the hooks' [`notify`](crate::Hooks::notify) is called; empty: never.
    pub notify: Vec<NotifyWhen>,
    /// What a run takes from its source at most.
    pub source_limits: crate::source::SourceLimits,
}

/// The most retries a job may ask for (`maxRetries`, `Job.MaxRetries`, `--retries`): with
/// the doubling waits capped at 5 minutes, this is more than eight hours of trying.
pub const MAX_RETRIES: u32 = 100;

/// The shortest wait before a retry: a wait of 0 still backs off, so a server that refuses
/// at once is not hammered.
pub const MIN_RETRY_WAIT: Duration = Duration::from_secs(1);

/// The longest wait between two tries of a run: the doubling stops here.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

impl JobSettings {
    /// How a run that fails for a transient reason is tried again: `max_retries` more
    /// times (at most [`MAX_RETRIES`]), waiting `retry_wait` (at least [`MIN_RETRY_WAIT`]),
    /// then twice as long each time, up to [`MAX_RETRY_WAIT`]. A host retrying its own start
    /// (opening a destination) uses the same.
    pub fn retry_policy(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy {
            attempts: self.max_retries.min(MAX_RETRIES) + 1,
            first_wait: self.retry_wait.max(MIN_RETRY_WAIT),
            max_wait: MAX_RETRY_WAIT,
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            max_retries: 0,
            retry_wait: Duration::from_secs(30),
            task_session_timeout: None,
            concurrent: false,
            threads: 0,
            dry_run: false,
            parameters: Parameters::new(),
            schedule: None,
            enabled: true,
            on_failure: OnFailure::Abort,
            run_order: 0,
            notify: Vec::new(),
            source_limits: Default::default(),
        }
    }
}

impl JobSettings {
    /// What the job file says about how it runs. From `jobInfo`: `schedule` (a cron
    /// expression; empty: none), `enabled`, `isEnable` (false: the schedule never starts
    /// it), `onFailure`, `runOrder`. From `settings`: the product's `IsNotificationEnabled`,
    /// and ours, in the same key/value style: `Schedule.TimeZone` (IANA name, default UTC),
    /// `Notification.When` (comma-separated [`NotifyWhen`] names; `Always` when
    /// notifications are enabled without it), `Job.MaxRetries`, `Job.TaskSessionTimeout`
    /// (minutes), `Job.Concurrent`. The top-level `parameters` object declares the job's
    /// [parameters](super::JobParameter). All mistakes are returned together.
    pub fn from_definition(definition: &DataSyncJob) -> Result<JobSettings, JobErrors> {
        let mut errors = Vec::new();
        let mut err = |location: &str, message: String| {
            errors.push(JobError {
                location: location.to_string(),
                message,
            })
        };
        let mut s = JobSettings::default();
        let setting = |key: &str| job::setting(definition, key);
        let info = definition.job_info.get();

        if let Some(info) = info {
            let expression = info.schedule.text().trim();
            let zone = setting("Schedule.TimeZone").unwrap_or("UTC");
            if !expression.is_empty() {
                match Schedule::new(expression, zone) {
                    Ok(schedule) => s.schedule = Some(schedule),
                    Err(e) => err("jobInfo.schedule", e.to_string()),
                }
            }
            s.enabled = info.enabled.get().copied().unwrap_or(s.schedule.is_some())
                && info.is_enable.get().copied().unwrap_or(true);
            match info.on_failure.text().trim().to_ascii_lowercase().as_str() {
                "" | "abort" => s.on_failure = OnFailure::Abort,
                "continue" => s.on_failure = OnFailure::Continue,
                other => err(
                    "jobInfo.onFailure",
                    format!("\"{other}\" is neither Abort nor Continue"),
                ),
            }
            s.run_order = info.run_order.get().copied().unwrap_or(0);
        }

        let bool_setting = |key: &str| setting(key).map(|v| (v, parse_bool(v)));
        if let Some((_, Some(true))) = bool_setting("IsNotificationEnabled") {
            s.notify = vec![NotifyWhen::Always];
            if let Some(rules) = setting("Notification.When") {
                s.notify.clear();
                for rule in rules.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    match NotifyWhen::parse(rule) {
                        Some(r) if !s.notify.contains(&r) => s.notify.push(r),
                        Some(_) => {}
                        None => err(
                            "settings[Notification.When]",
                            format!(
                                "\"{rule}\" is not one of Always, RecordsUpdated, Errors, JobFailed"
                            ),
                        ),
                    }
                }
            }
        }
        if let Some(v) = setting("Job.MaxRetries") {
            match v.parse() {
                Ok(n) if n <= MAX_RETRIES => s.max_retries = n,
                _ => err(
                    "settings[Job.MaxRetries]",
                    format!("\"{v}\" is not a count from 0 to {MAX_RETRIES}"),
                ),
            }
        }
        if let Some(v) = setting("Job.TaskSessionTimeout") {
            match v.parse() {
                Ok(n) => s.task_session_timeout = Some(n).filter(|n| *n > 0),
                Err(_) => err(
                    "settings[Job.TaskSessionTimeout]",
                    format!("\"{v}\" is not a number of minutes"),
                ),
            }
        }
        match bool_setting("Job.Concurrent") {
            Some((_, Some(b))) => s.concurrent = b,
            Some((v, None)) => err(
                "settings[Job.Concurrent]",
                format!("\"{v}\" is not True or False"),
            ),
            None => {}
        }
        if let Some((v, None)) = bool_setting("IsNotificationEnabled") {
            err(
                "settings[IsNotificationEnabled]",
                format!("\"{v}\" is not True or False"),
            );
        }
        if let Some(p) = definition.extra.get("parameters") {
            match serde_json::from_value::<Parameters>(p.clone()) {
                Ok(p) => s.parameters = p,
                Err(e) => err("parameters", e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(JobErrors(errors))
        }
    }
}
