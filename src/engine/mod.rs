//! The engine: one run of a [`Plan`] from a [`Source`] into a [`Destination`], with [`Hooks`].
//!
//! A run has two halves. **Read** goes type by type: source query and destination query
//! (through their hooks), then the source is read on the calling thread while a second
//! thread scans the destination (one scan per type, indexed by key), binds the field map to
//! the columns, and computes each row as it arrives, on the worker pool (step 1 below: hooks,
//! transforms, key, match, diff, and `Resolve` fields whose object an earlier row plans; no
//! writes). Any problem in this half is an [`Error`] and nothing has been written. **Apply**
//! then goes type by type:
//!
//! 1. (done while reading);
//! 2. sequentially, rows sharing a key, or two creates or renames aiming at one DN, all fail
//!    naming each other, so no result depends on which thread came first; then the `Resolve`
//!    fields left are settled, now that every row is known, and the early answers checked
//!    (see `resolve`);
//! 3. the writes are made in parallel, each row isolated from the others' failures;
//! 4. deletes (or deprovisions) of objects in scope that no row matched, all or nothing
//!    against the threshold.
//!
//! Results are gathered in source order, so the destination and the report (times aside) are
//! the same for one thread or many.

mod apply;
mod conflicts;
mod delete;
mod membership;
mod new_object;
mod prepare;
mod resolve;
mod row;
mod scan;
mod watermark;
mod waves;

use foldhash::{HashSet, HashSetExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::destination::{Destination, DestinationError};
use crate::dn::Dn;
use crate::hooks::{HookContext, HookResult, Hooks, QueryEvent};
use crate::matching::KeyIndex;
use crate::plan::{ContainerRule, ObjectPlan, Plan};
use crate::query::{Filter, parse_destination_query};
use crate::report::{DetailType, Report, RunStatus};
use crate::source::{Columns, RowSink, Since, Source, SourceError, SourceRow};
use crate::transform::{PasswordRule, Transform};
use crate::{Error, report};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Worker threads; 0 uses one per core.
    pub threads: usize,
    /// Compute the full plan and report, write nothing.
    pub dry_run: bool,
    /// Cancel the run and follow its progress from another thread.
    pub control: Option<RunControl>,
    /// Values hooks find in their context from the start (the job's parameters).
    pub parameters: BTreeMap<String, String>,
    /// For delta runs (`timeStampField` set and `updateAll` false): the highest timestamp seen
    /// per object type by the last successful run. Rows at or below it are left out.
    pub watermarks: BTreeMap<i64, String>,
    /// What the run takes from its source at most.
    pub limits: crate::source::SourceLimits,
}

/// The most worker threads a run starts, whatever it is asked for: past this, threads only
/// add contention (and a request for 100,000 of them would take minutes just to start).
pub const MAX_WORKERS: usize = 64;

/// Why a run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Someone cancelled it.
    Cancelled,
    /// It ran longer than its time-out.
    TimedOut,
}

/// A handle on a run, shared with other threads: cancel it, read its progress.
///
/// Cancelling stops the run taking new rows; rows already writing finish, deletes are not
/// started, and the report's status is `Aborted`.
///
/// ```
/// let control = datasync::engine::RunControl::default();
/// let options = datasync::RunOptions { control: Some(control.clone()), ..Default::default() };
/// control.cancel();
/// assert!(options.control.unwrap().stop_reason().is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunControl(Arc<ControlState>);

/// A time after which the run stops, read on a clock the caller chooses.
struct Deadline {
    clock: Arc<dyn crate::clock::Clock>,
    at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deadline({})", self.at)
    }
}

#[derive(Debug, Default)]
struct ControlState {
    deadline: Option<Deadline>,
    /// 0 running, 1 cancelled, 2 timed out.
    stop: AtomicU8,
    /// Rows taken from the source so far (the only progress while it is read).
    read: AtomicUsize,
    done: AtomicUsize,
    total: AtomicUsize,
    total_known: AtomicBool,
}

impl RunControl {
    /// Asks the run to stop.
    pub fn cancel(&self) {
        let _ = self
            .0
            .stop
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Asks the run to stop because it ran too long.
    pub fn time_out(&self) {
        let _ = self
            .0
            .stop
            .compare_exchange(0, 2, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// A control that times the run out once `clock` shows `at` (checked before each row).
    pub fn with_deadline(
        clock: Arc<dyn crate::clock::Clock>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> RunControl {
        RunControl(Arc::new(ControlState {
            deadline: Some(Deadline { clock, at }),
            ..Default::default()
        }))
    }

    /// Why the run was asked to stop, if it was (a passed deadline counts).
    pub fn stop_reason(&self) -> Option<StopReason> {
        if let Some(d) = &self.0.deadline
            && self.0.stop.load(Ordering::SeqCst) == 0
            && d.clock.now() >= d.at
        {
            self.time_out();
        }
        match self.0.stop.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(StopReason::Cancelled),
            _ => Some(StopReason::TimedOut),
        }
    }

    /// Rows taken from the source so far. While the source is read, rows are prepared but
    /// none is finished (every row is known before any is written), so this is the progress
    /// to show then; it stops at the total.
    pub fn rows_read(&self) -> usize {
        self.0.read.load(Ordering::Relaxed)
    }

    /// Rows finished so far, and the rows in all once the source has been read.
    pub fn progress(&self) -> (usize, Option<usize>) {
        let total = self
            .0
            .total_known
            .load(Ordering::SeqCst)
            .then(|| self.0.total.load(Ordering::SeqCst));
        (self.0.done.load(Ordering::SeqCst), total)
    }

    fn set_total(&self, total: usize) {
        self.0.total.store(total, Ordering::SeqCst);
        self.0.total_known.store(true, Ordering::SeqCst);
    }

    pub(crate) fn row_done(&self) {
        self.0.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything one object type needs once prepared.
struct TypeRun<'p> {
    plan: &'p ObjectPlan,
    /// The source query's columns (the rows themselves are consumed by the run).
    columns: Columns,
    /// How many rows the source query returned.
    row_count: usize,
    bound: Vec<Transform<usize>>,
    container_field: Option<usize>,
    filter: Filter,
    /// The objects in scope: of each, what matching needs (see `scan`).
    index: KeyIndex,
    resolver: scan::DirectoryLookup,
    /// The fields an update compares, summed up per object by a fingerprint.
    compared: scan::Compared,
    /// What the scan asked of each object: what a changing object's whole entry is read with.
    scan_attributes: Vec<String>,
    /// The attribute names new objects use, by which they are packed (see `new_object`).
    names: Vec<crate::destination::AttributeName>,
    /// What the `Resolve` fields look up.
    resolve: resolve::ResolvePlan,
    /// A fixed container as the job writes it and its normal form.
    fixed_container: Option<(String, String)>,
    /// A delta run: only rows changed since the watermark, and never deletes.
    delta: bool,
    /// A `Static` password field (its position in the field map) and its value, computed
    /// once: it is the same for every row.
    static_password: Option<(usize, crate::Secret)>,
    /// Per field: a plain copy that is its column's last reader, so the row's value moves
    /// into the new object instead of being copied (see [`movable_fields`]).
    movable: Vec<bool>,
}

/// Which fields may take their column's value out of the row rather than copy it: plain
/// copies (no password, no delimiter) whose column no later field, container rule or script
/// reads. (`Resolve` keeps a short copy instead, see `resolve::Deferred`.)
/// On a large source this spares most of a row's copies, and the strings read on the
/// reading thread are then kept, not freed on another.
fn movable_fields(
    op: &ObjectPlan,
    bound: &[Transform<usize>],
    container_field: Option<usize>,
) -> Vec<bool> {
    // A script sees the whole row: nothing before it may move.
    let last_script = bound
        .iter()
        .rposition(|t| matches!(t, Transform::Script { .. }))
        .or(matches!(op.container, ContainerRule::FromScript(_)).then_some(bound.len()));
    let reads = |t: &Transform<usize>, column: usize| {
        let mut found = false;
        let _ = t.map_fields(|c| {
            found |= *c == column;
            Ok::<(), ()>(())
        });
        found
    };
    bound
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Transform::Copy(column) => {
                let f = &op.fields[i];
                f.password.is_none()
                    && f.delimiter.is_none()
                    && last_script.is_none_or(|s| s < i)
                    && container_field != Some(*column)
                    && !bound[i + 1..].iter().any(|later| reads(later, *column))
            }
            _ => false,
        })
        .collect()
}

impl TypeRun<'_> {
    /// A new object's container: its row's own, or the job's fixed one.
    fn container<'a>(&'a self, own: &'a Option<String>) -> &'a str {
        match (own, &self.plan.container) {
            (Some(own), _) => own,
            (None, ContainerRule::Fixed(dn)) => dn,
            (None, _) => "",
        }
    }
}

/// Calls a hook, turning a panic into an error so one bad hook fails one row, not the run.
fn guard<T>(f: impl FnOnce() -> HookResult<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        // The message and its causes, as the report keeps text.
        Ok(Err(e)) => Err(crate::error::chain(&e)),
        Err(panic) => Err(format!(
            "hook panicked: {}",
            crate::transform::panic_message(panic.as_ref())
        )),
    }
}

/// The naming context above `dn`: its trailing `DC=` components (the whole DN if it has none).
fn naming_context(dn: &str) -> String {
    match Dn::parse(dn) {
        Ok(parsed) => {
            let dcs: Vec<_> = parsed
                .rdns
                .iter()
                .rev()
                .take_while(|rdn| rdn.iter().all(|a| a.attr.eq_ignore_ascii_case("dc")))
                .cloned()
                .collect();
            if dcs.is_empty() {
                dn.to_string()
            } else {
                Dn {
                    rdns: dcs.into_iter().rev().collect(),
                }
                .to_string()
            }
        }
        Err(_) => dn.to_string(),
    }
}

/// Runs `plan`. Row failures are in the report; an `Err` means the job could not run and
/// nothing was written.
///
/// ```
/// use datasync::{engine, job, plan, LdifDirectory, NoHooks, RunStatus};
/// let wire = job::load("fixtures/jobs/excel-to-ad.json".as_ref()).unwrap();
/// let plan = plan::compile(&wire, &Default::default()).unwrap();
/// let mut source = datasync::source::open("fixtures/sources/people.xlsx".as_ref()).unwrap();
/// let directory = LdifDirectory::in_memory();
/// let report = engine::run(&plan, source.as_mut(), &directory, &NoHooks, &Default::default()).unwrap();
/// assert_eq!(report.status, RunStatus::FinishedSuccess);
/// assert_eq!(report.counts.added, report.counts.read);
/// ```
pub fn run(
    plan: &Plan,
    source: &mut dyn Source,
    destination: &dyn Destination,
    hooks: &dyn Hooks,
    options: &RunOptions,
) -> Result<Report, Error> {
    let started = Instant::now();
    let mut report = Report::new(&plan.name, options.dry_run);
    let ctx = HookContext::new(&plan.name, options.dry_run);
    let job = || plan.name.clone();
    let hook_error = |event: &'static str, message: String| Error::Hook {
        job: job(),
        event,
        message,
    };
    for (name, value) in &options.parameters {
        ctx.add_to_context(name, value.clone());
    }
    guard(|| hooks.startup(&ctx)).map_err(|m| hook_error("startup", m))?;
    let capabilities = destination.capabilities();
    check_generated_passwords(plan, &capabilities)?;

    let control = options.control.as_ref();
    let threads = if options.threads == 0 {
        capabilities
            .connections
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    } else {
        options.threads
    }
    .clamp(1, MAX_WORKERS);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("datasync-{i}"))
        .build()
        .ok();
    let now = report::now_iso();
    let today = now.get(..10).unwrap_or("").to_string();
    let shared = row::Shared {
        ctx: &ctx,
        hooks,
        destination,
        dry_run: options.dry_run,
        now: &now,
        today: &today,
        containers: std::sync::RwLock::new(HashSet::new()),
        control,
        scopes: membership::job_scopes(plan),
        group_changes: Default::default(),
        moved: Default::default(),
    };

    // Read and prepare every type before the first write: any problem there is an error
    // and nothing has been written. Rows are prepared (step 1) while the source is read.
    let mut prepared = Vec::with_capacity(plan.objects.len());
    for op in &plan.objects {
        let read = read_type(plan, op, source, &shared, options, pool.as_ref())?;
        if let Some(w) = &read.watermark {
            report
                .watermarks
                .insert(op.object_type.code().to_string(), w.clone());
        }
        prepared.push(read);
    }
    if let Some(c) = control {
        c.set_total(prepared.iter().map(|read| read.run.row_count).sum());
    }

    // A type that fills groups from other objects' keys runs after the types that create
    // those objects, whatever the job's order: its members are then found in the directory.
    prepared.sort_by_key(|read| read.run.plan.fields.iter().any(|f| f.is_dn_set()));
    let reference_attributes = membership::reference_attributes(plan);
    for read in prepared {
        let tr = &read.run;
        report.counts.read += tr.row_count;
        let (results, warnings) = apply_type(&shared, tr, read.rows, read.planned, pool.as_ref());
        add_warnings(&mut report, tr.plan.object_type.code(), warnings);
        // A stopped run starts no deletes (its rows are not all known), nor does a delta run
        // (it sees only the rows that changed).
        let stopped = control.and_then(RunControl::stop_reason).is_some();
        let mut moved: Vec<(String, Option<String>)> = Vec::new();
        let withheld = if stopped || tr.delta {
            false
        } else {
            delete::run(
                &shared,
                tr,
                &results,
                &mut report,
                pool.as_ref(),
                &mut moved,
            )
        };
        moved.extend(results.iter().flatten().filter_map(|r| {
            let (old, new) = r.rest.as_ref()?.renamed.as_ref()?;
            Some((old.clone(), Some(new.clone())))
        }));
        if !capabilities.maintains_references {
            for failure in membership::fix_references(&shared, &reference_attributes, &moved) {
                report.detail(DetailType::Error, failure);
                report.status = RunStatus::FinishedFail;
            }
        }
        shared.moved.record(&moved);
        // After the references are fixed: a user renamed by this type is in its groups under
        // the new DN by then, which is the DN its joins and leaves name.
        membership::write_member_of(&shared, &mut report, pool.as_ref());
        row::record(tr.plan, results, &mut report);
        if withheld {
            report.status = RunStatus::FinishedFail;
        }
    }
    if !report.failed.is_empty() || !report.delete_failed.is_empty() {
        report.status = RunStatus::FinishedFail;
    }
    if let Some(reason) = control.and_then(RunControl::stop_reason) {
        report.status = RunStatus::Aborted;
        let why = match reason {
            StopReason::Cancelled => "the run was cancelled",
            StopReason::TimedOut => "the run timed out (taskSessionTimeout)",
        };
        report.detail(
            DetailType::Warning,
            format!(
                "{why}: rows not started were skipped ({} skipped) and no deletes were made",
                report.counts.skipped
            ),
        );
    }
    if let Err(m) = guard(|| hooks.shutdown(&ctx, &report)) {
        report.detail(DetailType::Error, format!("the shutdown hook failed: {m}"));
        report.status = RunStatus::FinishedFail;
    }
    // A dry run commits too: it changed nothing, and ending its read releases the store.
    destination
        .commit()
        .map_err(|source| Error::Destination { job: job(), source })?;
    report.stop_time = report::now_iso();
    report.duration = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The most warnings a type's left-out values add to the report, one detail each; the rest
/// are counted in one more.
const MAX_WARNINGS: usize = 1000;

/// Adds a type's warnings (values `Resolve` left out of a set of DNs, groups `memberOf` named
/// that are not in scope) to the report as warning details.
fn add_warnings(report: &mut Report, code: i64, warnings: Vec<String>) {
    let count = warnings.len();
    for w in warnings.into_iter().take(MAX_WARNINGS) {
        report.detail(DetailType::Warning, format!("object type {code}: {w}"));
    }
    if count > MAX_WARNINGS {
        report.detail(
            DetailType::Warning,
            format!(
                "object type {code}: {} more values were left out (the first {MAX_WARNINGS} are listed)",
                count - MAX_WARNINGS
            ),
        );
    }
}

/// A type after its read half.
struct TypeRead<'p> {
    /// What its rows need.
    run: TypeRun<'p>,
    /// Its rows after step 1.
    rows: Vec<row::Prepared>,
    /// What they will have of the values `Resolve` looks up.
    planned: resolve::PlannedValues,
    /// For a delta run, the next watermark.
    watermark: Option<String>,
}

/// The most consecutive rows step 3 hands a worker at once (see `apply_type`).
const MAX_ADD_RUN: usize = 256;

/// Rows travel from the reading thread to the preparing one in batches this big: enough to
/// make the channel's cost per row negligible, small enough to start preparing at once.
const BATCH_ROWS: usize = 512;

/// How many batches the reading thread may have sent that the preparing one has not taken:
/// 64 of 512 rows lets the read overlap most of a large destination scan while holding at most
/// 32,768 rows read ahead.
const BATCHES_AHEAD: usize = 64;

/// What the reading thread hands the preparing one.
enum Batch {
    Columns(Columns),
    Rows(Vec<SourceRow>),
}

/// The preparing thread's ends of the channels to and from the reading one.
struct FromReader {
    /// Batches as they are read.
    batches: crossbeam_channel::Receiver<Batch>,
    /// Prepared batches, back to the reading thread to free and refill (see [`ChannelSink`]).
    give_back: crossbeam_channel::Sender<Vec<SourceRow>>,
}

/// The engine's [`RowSink`]: batches of rows onto a channel. A closed channel (the preparing
/// side gave up) stops the read.
///
/// Prepared batches come back on `returned`, holding what their rows did not move into new
/// objects, and are cleared and refilled here. The reading thread made those strings, and
/// freeing them here rather than on the workers keeps the workers out of its allocator arena
/// (with glibc's allocator this cut the reading thread's CPU time by about 5%) and spares a
/// new batch vector each time.
///
/// It also holds the run to its [`SourceLimits`](crate::source::SourceLimits), stops the read
/// when the run is cancelled or times out, and puts text in Unicode normal form C, so values
/// that look alike are alike whichever source or platform spelt them.
struct ChannelSink {
    sender: crossbeam_channel::Sender<Batch>,
    returned: crossbeam_channel::Receiver<Vec<SourceRow>>,
    batch: Vec<SourceRow>,
    limits: crate::source::SourceLimits,
    control: Option<RunControl>,
    columns: Vec<String>,
    rows: usize,
    bytes: usize,
    /// The limit the source passed, if it did: the read stopped there.
    over_limit: Option<SourceError>,
}

impl ChannelSink {
    /// Checks `row` against the limits and normalises its text; `Err` when it passes a limit.
    fn admit(&mut self, row: &mut SourceRow) -> Result<(), SourceError> {
        self.rows += 1;
        let too_large = |column: Option<String>, message: String| SourceError::TooLarge {
            row: Some(row.number),
            column,
            message,
        };
        if self.rows > self.limits.max_rows {
            return Err(too_large(
                None,
                format!(
                    "the source sent more than {} rows, the most one run takes \
                     (RunOptions::limits); check the source query",
                    self.limits.max_rows
                ),
            ));
        }
        for (i, value) in row.values.iter_mut().enumerate() {
            let Some(v) = value else { continue };
            if v.len() > self.limits.max_value_bytes {
                return Err(too_large(
                    self.columns.get(i).cloned(),
                    format!(
                        "a value of {} bytes is larger than the {} a value may have",
                        v.len(),
                        self.limits.max_value_bytes
                    ),
                ));
            }
            self.bytes += v.len();
            if !v.is_ascii()
                && let std::borrow::Cow::Owned(composed) = crate::text::nfc(v)
            {
                *v = composed;
            }
        }
        if self.bytes > self.limits.max_bytes {
            return Err(too_large(
                None,
                format!(
                    "the source sent more than {} bytes of values, the most one run takes \
                     (RunOptions::limits)",
                    self.limits.max_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl ChannelSink {
    fn send(&mut self, batch: Batch) -> std::ops::ControlFlow<()> {
        match self.sender.send(batch) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(_) => std::ops::ControlFlow::Break(()),
        }
    }

    /// Sends what is left; dropping the sink then closes the channel.
    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let rows = std::mem::take(&mut self.batch);
            let _ = self.send(Batch::Rows(rows));
        }
    }
}

impl RowSink for ChannelSink {
    fn columns(&mut self, columns: &Columns) -> std::ops::ControlFlow<()> {
        self.columns = columns.names().to_vec();
        self.send(Batch::Columns(columns.clone()))
    }

    fn row(&mut self, mut row: SourceRow) -> std::ops::ControlFlow<()> {
        if let Err(e) = self.admit(&mut row) {
            self.over_limit = Some(e);
            return std::ops::ControlFlow::Break(());
        }
        // A stopped run reads no further (checked once a batch: it reads a clock).
        if self.batch.is_empty()
            && self
                .control
                .as_ref()
                .is_some_and(|c| c.stop_reason().is_some())
        {
            return std::ops::ControlFlow::Break(());
        }
        if let Some(control) = &self.control {
            // Relaxed: a counter for pollers, ordered with nothing.
            control.0.read.fetch_add(1, Ordering::Relaxed);
        }
        self.batch.push(row);
        if self.batch.len() < BATCH_ROWS {
            return std::ops::ControlFlow::Continue(());
        }
        let next = match self.returned.try_recv() {
            Ok(mut used) => {
                used.clear();
                used
            }
            Err(_) => Vec::with_capacity(BATCH_ROWS),
        };
        let rows = std::mem::replace(&mut self.batch, next);
        self.send(Batch::Rows(rows))
    }

    fn stop_signal(&self) -> Option<crate::source::StopSignal> {
        let control = self.control.clone()?;
        Some(crate::source::StopSignal::new(move || {
            control.stop_reason().is_some()
        }))
    }
}

/// Refuses a job whose generated passwords could not meet the destination's password rules
/// (AD's domain policy): every new user would fail, one by one, after the read.
fn check_generated_passwords(
    plan: &Plan,
    capabilities: &crate::destination::Capabilities,
) -> Result<(), Error> {
    let Some(rules) = capabilities.password_rules else {
        return Ok(());
    };
    for op in &plan.objects {
        for f in &op.fields {
            let Some(PasswordRule::Generate(policy)) = &f.password else {
                continue;
            };
            let short = policy.length < rules.min_length;
            let simple = rules.complex && policy.kinds() < 3;
            if short || simple {
                return Err(Error::Destination {
                    job: plan.name.clone(),
                    source: DestinationError::Rejected {
                        message: format!(
                            "{}: generated passwords of {} characters of {} kind(s) cannot meet \
                             the domain's password policy (at least {} characters{}); \
                             nothing was written",
                            f.location(),
                            policy.length,
                            policy.kinds(),
                            rules.min_length,
                            if rules.complex {
                                ", of three kinds: upper case, lower case, digits, symbols"
                            } else {
                                ""
                            }
                        ),
                    },
                });
            }
        }
    }
    Ok(())
}

/// One type's read half: its queries (through the hooks), the source read, the destination
/// scan and step 1 of every row. The source is read on this thread while a second one scans
/// the destination and then prepares rows on the pool as they arrive, so on a large source
/// most of the preparing is done by the time the last row is read.
fn read_type<'p>(
    plan: &Plan,
    op: &'p ObjectPlan,
    source: &mut dyn Source,
    shared: &row::Shared<'_>,
    options: &RunOptions,
    pool: Option<&rayon::ThreadPool>,
) -> Result<TypeRead<'p>, Error> {
    let (hooks, ctx) = (shared.hooks, shared.ctx);
    let mut query = op.source_query.clone();
    guard(|| {
        hooks.build_source_query(
            ctx,
            &mut QueryEvent {
                object_type: op.object_type,
                query: &mut query,
            },
        )
    })
    .map_err(|message| Error::Hook {
        job: plan.name.clone(),
        event: "build_source_query",
        message,
    })?;
    let mut destination_query = op.destination_query.clone();
    guard(|| {
        hooks.build_destination_query(
            ctx,
            &mut QueryEvent {
                object_type: op.object_type,
                query: &mut destination_query,
            },
        )
    })
    .map_err(|message| Error::Hook {
        job: plan.name.clone(),
        event: "build_destination_query",
        message,
    })?;
    let filter = if destination_query == op.destination_query {
        op.destination_filter.clone()
    } else {
        parse_destination_query(&destination_query).map_err(|source| Error::Query {
            job: plan.name.clone(),
            object_type: op.object_type.code(),
            source,
        })?
    };

    // Bounded: the reader runs at most this far ahead of the preparing side (which first
    // scans the destination), so a source of any size holds a bounded number of read rows.
    let (sender, batches) = crossbeam_channel::bounded(BATCHES_AHEAD);
    let (give_back, returned) = crossbeam_channel::unbounded();
    let from_reader = FromReader { batches, give_back };
    let (read, prepared) = std::thread::scope(|scope| {
        let preparer = scope.spawn(|| {
            let prepared = prepare_batches(plan, op, filter, shared, options, pool, &from_reader);
            // After a problem, take the rest and drop it: the source is then read to its end
            // and its own errors, which are reported first, are found.
            if prepared.is_err() {
                for _ in from_reader.batches.iter() {}
            }
            prepared
        });
        let mut sink = ChannelSink {
            sender,
            returned,
            batch: Vec::with_capacity(BATCH_ROWS),
            limits: options.limits,
            control: shared.control.cloned(),
            columns: Vec::new(),
            rows: 0,
            bytes: 0,
            over_limit: None,
        };
        // A delta run asks a source that can filter for the changed rows only; the preparing
        // side keeps the same rows either way.
        let since = match (&op.time_stamp_field, op.update_all) {
            (Some(column), false) => options
                .watermarks
                .get(&op.object_type.code())
                .map(|value| Since { column, value }),
            _ => None,
        };
        let mut read = match since {
            Some(since) => source.query_since_into(&query, since, &mut sink),
            None => source.query_into(&query, &mut sink),
        };
        if let Some(e) = sink.over_limit.take() {
            read = Err(e);
        }
        // A query the run's stop interrupted is a stopped run, not a broken source.
        if read.is_err() && shared.control.and_then(RunControl::stop_reason).is_some() {
            read = Ok(());
        }
        // Rows already read go on to be prepared only when the read is whole.
        if read.is_ok() {
            sink.flush();
        }
        drop(sink);
        let prepared = preparer.join().unwrap_or_else(|_| {
            Err(Error::Destination {
                job: plan.name.clone(),
                source: DestinationError::Rejected {
                    message: "preparing rows panicked".into(),
                },
            })
        });
        (read, prepared)
    });
    // A source problem is reported first: it is the one a user fixes first.
    read.map_err(|source| Error::Source {
        job: plan.name.clone(),
        object_type: op.object_type.code(),
        field: None,
        source: Box::new(source),
    })?;
    prepared
}

/// The preparing side of [`read_type`]: scans the destination, binds the field map to the
/// columns the source sends first, then prepares each batch of rows on the pool, in order.
fn prepare_batches<'p>(
    plan: &Plan,
    op: &'p ObjectPlan,
    filter: Filter,
    shared: &row::Shared<'_>,
    options: &RunOptions,
    pool: Option<&rayon::ThreadPool>,
    from_reader: &FromReader,
) -> Result<TypeRead<'p>, Error> {
    let FromReader { batches, give_back } = from_reader;
    let code = op.object_type.code();
    let source_error = |field: Option<String>, source: SourceError| Error::Source {
        job: plan.name.clone(),
        object_type: code,
        field,
        source: Box::new(source),
    };
    let resolve = resolve::ResolvePlan::new(op);
    let compared = scan::Compared::new(op);
    let scanned = scan::scan(op, shared.destination, &filter, &resolve, &compared);
    // Without columns the source failed (reported by the reading side) or sent nothing.
    let columns = match batches.recv() {
        Ok(Batch::Columns(columns)) => columns,
        _ => Columns::default(),
    };
    // A delta run keeps the rows whose timestamp is past the last run's, and reports the
    // highest timestamp it saw as the next watermark.
    let since = options.watermarks.get(&code);
    let stamp_column = match (&op.time_stamp_field, op.update_all) {
        (Some(field), false) => Some(columns.index(field).ok_or_else(|| {
            source_error(
                Some("syncQuery.timeStampField".into()),
                SourceError::MissingColumn {
                    column: field.clone(),
                    available: columns.names().to_vec(),
                },
            )
        })?),
        _ => None,
    };
    let scan::Scanned {
        index,
        resolver,
        attributes: scan_attributes,
    } = scanned.map_err(|source| Error::Destination {
        job: plan.name.clone(),
        source,
    })?;
    let missing = |field: String, column: String| {
        source_error(
            Some(field),
            SourceError::MissingColumn {
                column,
                available: columns.names().to_vec(),
            },
        )
    };
    let mut bound = Vec::with_capacity(op.fields.len());
    for f in &op.fields {
        bound.push(f.transform.bind(&columns).map_err(|e| match e {
            crate::transform::TransformError::MissingColumn { column } => {
                missing(f.location(), column)
            }
            other => missing(f.location(), other.to_string()),
        })?);
    }
    let container_field =
        match &op.container {
            ContainerRule::FromField(name) => Some(columns.index(name).ok_or_else(|| {
                missing("objectsOption.containerOptionValue".into(), name.clone())
            })?),
            _ => None,
        };
    let fixed_container = match &op.container {
        ContainerRule::Fixed(dn) => crate::dn::normalize(dn).ok().map(|n| (dn.clone(), n)),
        _ => None,
    };
    let movable = movable_fields(op, &bound, container_field);
    // A `Static` transform reads no column, so its value is the run's, not a row's.
    let static_password = op
        .fields
        .iter()
        .zip(&bound)
        .position(|(f, b)| {
            matches!(f.password, Some(PasswordRule::Static)) && matches!(b, Transform::Static(_))
        })
        .and_then(|i| {
            let run = crate::transform::RunValues {
                now: shared.now,
                today: shared.today,
                resolver: &resolver.on(shared.destination),
            };
            let value = bound[i].apply(&columns, &[], &op.fields[i].attribute, &run);
            Some((i, crate::Secret::new(value.ok().flatten()?)))
        });
    let mut tr = TypeRun {
        plan: op,
        columns,
        row_count: 0,
        bound,
        container_field,
        filter,
        index,
        resolver,
        resolve,
        compared,
        scan_attributes,
        names: new_object_names(op),
        fixed_container,
        delta: stamp_column.is_some(),
        static_password,
        movable,
    };

    let mut watermark: Option<String> = None;
    let mut prepared: Vec<row::Prepared> = Vec::new();
    let mut planned = resolve::PlannedValues::new(&tr.resolve);
    let mut fresh: Vec<row::Prepared> = Vec::with_capacity(BATCH_ROWS);
    for batch in batches.iter() {
        let Batch::Rows(mut rows) = batch else {
            continue;
        };
        if let Some(column) = stamp_column {
            fn stamp(r: &SourceRow, column: usize) -> Option<&str> {
                r.values.get(column).and_then(Option::as_deref)
            }
            for s in rows.iter().filter_map(|r| stamp(r, column)) {
                if watermark
                    .as_deref()
                    .is_none_or(|w| watermark::compare_stamps(s, w).is_gt())
                {
                    watermark = Some(s.to_string());
                }
            }
            if let Some(since) = since {
                rows.retain(|r| {
                    stamp(r, column).is_some_and(|v| watermark::compare_stamps(v, since).is_gt())
                });
            }
        }
        let tr = &tr;
        // Rows of this batch see the rows before it (for `Resolve`, see `resolve`), so
        // they are prepared apart and then appended.
        let earlier = resolve::Earlier {
            values: &planned,
            rows: &prepared,
        };
        let prepare = |r: &mut SourceRow| prepare::prepare(shared, tr, &earlier, r);
        match pool {
            Some(pool) => pool.install(|| fresh.par_extend(rows.par_iter_mut().map(prepare))),
            None => fresh.extend(rows.iter_mut().map(prepare)),
        }
        let start = prepared.len();
        prepared.append(&mut fresh);
        planned.add_batch(tr, &prepared, start);
        // Back to the reading thread, which frees what is left (see `ChannelSink`). Once it
        // has finished reading the send fails and the batch is dropped here.
        let _ = give_back.send(rows);
    }
    tr.row_count = prepared.len();
    let watermark = watermark.or_else(|| since.cloned());
    Ok(TypeRead {
        run: tr,
        rows: prepared,
        planned,
        watermark,
    })
}

/// The names a type's new objects are built with: its fields' attributes, and the few others
/// a new object may carry beside them (its object classes, a password attribute a field map
/// writes as text, the account control).
fn new_object_names(op: &ObjectPlan) -> Vec<crate::destination::AttributeName> {
    let mut names: Vec<crate::destination::AttributeName> = Vec::new();
    let known = [
        "objectClass",
        "userPassword",
        "unicodePwd",
        "userAccountControl",
    ];
    for name in op
        .fields
        .iter()
        .map(|f| f.attribute.clone())
        .chain(known.map(Into::into))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Maps `items` through `f` on the pool (or on this thread without one), keeping order.
fn par_map<T: Sync, R: Send>(
    pool: Option<&rayon::ThreadPool>,
    items: &[T],
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    match pool {
        Some(pool) => pool.install(|| items.par_iter().map(&f).collect()),
        None => items.iter().map(f).collect(),
    }
}

/// Steps 2 and 3 of one type: the rows' results, in source order, in runs.
fn apply_type(
    shared: &row::Shared<'_>,
    tr: &TypeRun<'_>,
    mut prepared: Vec<row::Prepared>,
    mut planned: resolve::PlannedValues,
    pool: Option<&rayon::ThreadPool>,
) -> (Vec<Vec<row::RowRecord>>, Vec<String>) {
    // 1. (rows were computed, with no writes, while the source was read)

    // 2. conflicts (two rows, one key or one new DN), so the outcome does not depend on
    // thread timing (see `conflicts`).
    let conflicts = conflicts::find(tr, &prepared);
    planned.fail_rows(tr, &mut prepared, conflicts);
    // 2b. `Resolve` fields not answered while rows were prepared, or whose answer no longer
    // stands, now that every row is known.
    let mut warnings = planned.settle(tr, shared.destination, &mut prepared, pool, &shared.moved);
    // 2c. The groups a user row names (`memberOf`), against the groups as they are now.
    warnings.extend(membership::plan_member_of(shared, tr, &mut prepared, pool));

    // 3. writes, in parallel, each row on its own (taken out of the list, so each thread
    // frees its own). Rows go to workers in runs of consecutive rows whose new objects are
    // added in one call: the embedded directory then takes its lock once per run instead of
    // once per object, which had two workers queueing on it. Runs are short enough to keep
    // every worker busy. Each run's results stay its own list: gathering 100,000 of them
    // into one was a copy of all of them.
    let workers = pool.map_or(1, rayon::ThreadPool::current_num_threads);
    let apply_rows = |rows: &mut [row::Prepared]| -> Vec<Vec<row::RowRecord>> {
        let run = (rows.len() / (workers * 8)).clamp(1, MAX_ADD_RUN);
        let apply_run = |rows: &mut [row::Prepared]| {
            apply::apply_all(shared, tr, rows.iter_mut().map(row::Prepared::take))
        };
        match pool {
            Some(pool) => pool.install(|| rows.par_chunks_mut(run).map(apply_run).collect()),
            None => rows.chunks_mut(run).map(apply_run).collect(),
        }
    };
    // A row that names an object this run creates is written after that object: rows go in
    // waves, each after the waves of the objects it names. A directory that checks references
    // (AD: a `manager` must name an existing object) needs that order; every directory needs
    // it for an object that is then not created (its create vetoed in `row_adding` or refused):
    // the rows naming it take the reference back before their write, instead of leaving it
    // pointing at nothing.
    let Some((waves, named)) = waves::reference_waves(tr.plan, &prepared, &tr.names, pool) else {
        return (apply_rows(&mut prepared), warnings);
    };
    // The rows put in wave order in place (a second list of rows was 15% more memory on a
    // first run of 100,000 users): `order[k]` is the row that goes to position k.
    let mut order: Vec<u32> = (0..prepared.len() as u32).collect();
    order.sort_by_key(|i| waves[*i as usize]);
    waves::permute(&mut prepared, &order);
    let mut results: Vec<row::RowRecord> = Vec::with_capacity(prepared.len());
    let mut uncreated = resolve::Uncreated::default();
    let mut at = 0;
    while at < prepared.len() {
        let wave = waves[order[at] as usize];
        let end = at + order[at..].partition_point(|i| waves[*i as usize] == wave);
        let rows = &mut prepared[at..end];
        if !uncreated.is_empty() {
            // A stopped run writes no more rows: their references are taken back all the
            // same, but the report does not list what a stop left out.
            let stopped = shared.control.is_some_and(|c| c.stop_reason().is_some());
            for p in rows.iter_mut() {
                let taken_back = resolve::take_back_uncreated(tr, p, &uncreated);
                if !stopped {
                    warnings.extend(taken_back);
                }
            }
        }
        // The DNs of the new objects other rows name, to tell afterwards which were created.
        let planned: Vec<(u64, String)> = rows
            .iter()
            .zip(&order[at..end])
            .filter(|(_, i)| named[**i as usize])
            .filter_map(|(p, _)| match &p.planned {
                row::Planned::Create { entry, .. } => Some((p.row, entry.dn().to_string())),
                _ => None,
            })
            .collect();
        let done = apply_rows(rows);
        if !planned.is_empty() {
            let added: foldhash::HashMap<u64, &str> = done
                .iter()
                .flatten()
                .filter_map(|r| Some((r.row, r.added.as_deref()?)))
                .collect();
            for (row, dn) in planned {
                let created = added.get(&row).is_some_and(|added| {
                    *added == dn
                        || crate::destination::value_key(added)
                            == crate::destination::value_key(&dn)
                });
                if !created {
                    uncreated.insert(crate::destination::value_key(&dn), row);
                }
            }
        }
        results.extend(done.into_iter().flatten());
        at = end;
    }
    // Back in source order, for the report.
    drop(prepared);
    let mut back = vec![0u32; order.len()];
    for (k, i) in order.iter().enumerate() {
        back[*i as usize] = k as u32;
    }
    waves::permute(&mut results, &back);
    (vec![results], warnings)
}
