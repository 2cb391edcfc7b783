//! The datasync command line.
//!
//! ```text
//! datasync run JOB.json [--source FILE|db:PATH|ldif:PATH|LDAP-URL|DATABASE-URL]
//!                       [--destination db:PATH|ldif:PATH|csv:PATH|xlsx:PATH|DATABASE-URL|LDAP-URL]
//!                       [--bind-dn DN] [--source-bind-dn DN] [--ca-file PEM]
//!                       [--insecure-skip-tls-verify] [--server-kind ad|ldap]
//!                       [--must-change-password] [--dry-run]
//!                       [--report FILE] [--password-out FILE] [--threads N] [--var NAME=VALUE]…
//!                       [--timeout MINUTES] [--retries N] [--retry-wait SECONDS] [--state FILE]
//! datasync schedule JOB.json… [--destination …] [--state FILE] [connection options as for run]
//! datasync validate JOB.json
//! datasync export STORE --ldif FILE|-
//! datasync import FILE|- --into STORE
//! ```
//! The default destination is the embedded store `db:directory.db`; `export` writes a store
//! out as LDIF (parents first, as `ldapadd` takes it) and `import` adds an LDIF file's entries
//! to a store, all or none.
//! Bind passwords come from the environment: `DATASYNC_BIND_PASSWORD` (destination) and
//! `DATASYNC_SOURCE_BIND_PASSWORD` (LDAP source); a database source's (`postgres://USER@HOST/DB`,
//! `mysql://USER@HOST/DB`, or the job's `Source.ConnectionString` setting) from
//! `DATASYNC_SOURCE_PASSWORD`; a database table destination's from `DATASYNC_DESTINATION_PASSWORD`.
//!
//! `run` goes through the library's lifecycle runner, as a host service would: `--var` values
//! are checked against the job's declared parameters, `--timeout` and `--retries` set
//! `taskSessionTimeout` and `maxRetries`, `--state` keeps delta watermarks, and Ctrl-C
//! cancels the run (rows in flight finish, nothing is deleted). `schedule` starts each job on
//! its `jobInfo.schedule` cron expression (time zone: the `Schedule.TimeZone` setting) until
//! Ctrl-C, then waits for the running jobs to finish. Job files that share a
//! `jobInfo.collectionId` run as one collection, in `runOrder`, on the one schedule their files
//! give.
//!
//! Exit codes: 0 success, 1 finished with failures (or aborted), 2 could not run.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use datasync::destination::{LdapDirectory, ServerKind, Store, TableDestination, TableSpec};
use datasync::hooks::{HookContext, HookResult, PasswordSet, RowDone};
use datasync::ldap::{LdapConfig, Security, TlsVerify};
use datasync::lifecycle::{
    Collection, FileStateStore, Fired, Job, LifecycleError, OpenSource, Runner, Scheduler,
    StateStore, StepOutcome, SystemClock,
};
use datasync::report::RowFailure;
use datasync::source::{DirectorySource, LdapSource, Source};
use datasync::transform::TransformContext;
use datasync::{Destination, Error, Hooks, LdifDirectory, Report, Secret, job, source};
use indicatif::{ProgressBar, ProgressStyle};

// The command line owns its process, so it picks the allocator: a run makes and frees a few
// dozen small strings per row, and mimalloc's per-thread free lists spare the workers
// glibc's arena locks and consolidation passes (a third of a large run's time in `perf`), and
// hand memory back instead of fragmenting.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "datasync", version, about = "Run GroupID DataSyncJobs jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job.
    Run(Box<RunArgs>),
    /// Run jobs on their cron schedules until Ctrl-C.
    Schedule(Box<ScheduleArgs>),
    /// Check a job and list every mistake.
    Validate {
        /// The job JSON.
        job: PathBuf,
    },
    /// Write an embedded store out as LDIF, parents before children.
    Export {
        /// The store (a file, or db:PATH).
        store: String,
        /// The LDIF file to write (replaced whole); `-` is standard output.
        #[arg(long)]
        ldif: PathBuf,
    },
    /// Add the entries of an LDIF file (content or `changetype: add` records) to an embedded
    /// store, creating it if need be: all of them, or none.
    Import {
        /// The LDIF file; `-` is standard input.
        file: PathBuf,
        /// The store (a file, or db:PATH).
        #[arg(long)]
        into: String,
    },
}

/// `datasync run`'s arguments.
#[derive(clap::Args)]
struct RunArgs {
    /// The job JSON.
    job: PathBuf,
    /// The source: a file (default: the job's Source.File setting, relative to the job file),
    /// the embedded directory (db:PATH for a store, ldif:PATH or a .ldif file), an LDAP URL
    /// with the search base as its path (ldaps://host/OU=Staff,DC=example,DC=com), or a
    /// database: PostgreSQL (postgres://USER@HOST[:PORT]/DB[?sslmode=require]) or MariaDB/MySQL
    /// (mysql://USER@HOST[:PORT]/DB[?ssl-mode=REQUIRED]); its password comes from
    /// DATASYNC_SOURCE_PASSWORD.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Compute the plan and the report; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the run report (JSON) here, also when the job cannot run; `-` is standard
    /// output. The file is replaced whole once the run is over.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the passwords set in this run here (CSV dn,password; mode 0600), once they are
    /// kept. A new file, or one this option wrote before; never through a symlink.
    #[arg(long)]
    password_out: Option<PathBuf>,
    /// A job parameter or %NAME% variable for Static transforms, NAME=VALUE (repeatable);
    /// checked against the job's declared parameters.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Stop the run after this many minutes, like a cancel (taskSessionTimeout).
    #[arg(long, value_name = "MINUTES")]
    timeout: Option<u32>,
    /// Try a run that fails for a transient reason (server unreachable, connection lost)
    /// this many more times (maxRetries).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(datasync::lifecycle::MAX_RETRIES)))]
    retries: Option<u32>,
    /// Seconds before the first retry (at least 1); each next wait doubles.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    retry_wait: u64,
}

/// `datasync schedule`'s arguments.
#[derive(clap::Args)]
struct ScheduleArgs {
    /// The job files; each runs on its jobInfo.schedule.
    #[arg(required = true)]
    jobs: Vec<PathBuf>,
    #[command(flatten)]
    target: Target,
}

/// Where jobs write, and how they connect; shared by `run` and `schedule`.
#[derive(clap::Args)]
struct Target {
    /// Where to write: db:PATH or ldif:PATH (the embedded directory), a table (csv:PATH,
    /// xlsx:PATH with the job's Destination.Table sheet, default Sheet1, or a database's
    /// Destination.Table: postgres://USER@HOST/DB or mysql://USER@HOST/DB, the password from
    /// DATASYNC_DESTINATION_PASSWORD), or an LDAP server (ldap://host[:port],
    /// ldaps://host[:port], ldap://host?starttls).
    #[arg(long, default_value = "db:directory.db")]
    destination: String,
    /// The DN to bind to the destination server as; the password is read from the
    /// environment variable DATASYNC_BIND_PASSWORD, never from an argument.
    #[arg(long)]
    bind_dn: Option<String>,
    /// The DN to bind to an LDAP source as; the password comes from DATASYNC_SOURCE_BIND_PASSWORD.
    #[arg(long)]
    source_bind_dn: Option<String>,
    /// Trust only the CA certificates in this PEM file for ldaps:// and StartTLS.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Accept any server certificate. Anyone on the network path can then read the bind
    /// password and every password set: only for a lab server.
    #[arg(long)]
    insecure_skip_tls_verify: bool,
    /// The destination server's kind (default: from the job's Destination.ProviderName).
    #[arg(long, value_parser = ["ad", "ldap"])]
    server_kind: Option<String>,
    /// On Active Directory, new users with a password must change it at their first logon
    /// (pwdLastSet 0).
    #[arg(long)]
    must_change_password: bool,
    /// Worker threads (default: one per core; for an LDAP destination, one per connection;
    /// at most 64).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Keep delta-run watermarks (timeStampField, updateAll false) in this JSON file.
    #[arg(long)]
    state: Option<PathBuf>,
}

/// The CLI's hooks: a progress bar on a terminal, and password collection for --password-out.
struct CliHooks {
    progress: Option<ProgressBar>,
    passwords: Option<Mutex<Vec<(String, Secret)>>>,
}

impl Hooks for CliHooks {
    fn row_finished(&self, _: &HookContext, _: &RowDone) -> HookResult {
        if let Some(p) = &self.progress {
            p.inc(1);
        }
        Ok(())
    }

    fn row_failed(&self, _: &HookContext, _: &RowFailure) {
        if let Some(p) = &self.progress {
            p.inc(1);
        }
    }

    fn password_set(&self, _: &HookContext, event: &PasswordSet<'_>) -> HookResult {
        if let Some(list) = &self.passwords {
            list.lock()
                .map_err(|_| "password list lock poisoned")?
                .push((event.dn.to_string(), event.password.clone()));
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { job } => validate(&job),
        Command::Export { store, ldif } => finish(export(&store, &ldif)),
        Command::Import { file, into } => finish(import(&file, &into)),
        Command::Schedule(args) => schedule(&args),
        Command::Run(args) => {
            let wire = job::load(&args.job).ok();
            let name = wire.as_ref().map(job::job_name).unwrap_or_else(|| {
                args.job
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            // Every file the run will write is checked, and the report's and the password
            // file's places made ready, before anything is read or written: a run whose
            // results could not be kept does not start.
            let outputs = match Outputs::prepare(&args, wire.as_ref()) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let dry_run = args.dry_run;
            let Outputs { report, passwords } = outputs;
            let result = match run(&args, passwords) {
                Ok(r) => r,
                Err(e) => e.report(&name, dry_run),
            };
            print_report(&result);
            if let Err(e) = report.write(&result) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            ExitCode::from(result.status.exit_code() as u8)
        }
    }
}

/// A store's path from `PATH` or `db:PATH`.
fn store_path(given: &str) -> &Path {
    Path::new(given.strip_prefix("db:").unwrap_or(given))
}

/// Exit code and message of `export` or `import`.
fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(message) => {
            eprintln!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// `datasync export STORE --ldif FILE`: the store as LDIF, streamed; a file is replaced
/// whole once every entry is written, and never the store itself.
fn export(store: &str, ldif: &Path) -> Result<String, String> {
    let path = store_path(store);
    let store = Store::open_to_read(path).map_err(|e| e.to_string())?;
    let count = if ldif.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        store.export_ldif(&mut out).map_err(|e| e.to_string())?
    } else {
        let target =
            datasync::files::resolve(ldif).map_err(|e| format!("{}: {e}", ldif.display()))?;
        // The store's path is resolved already (through symlinks, canonical).
        if target == store.path() {
            return Err(format!(
                "--ldif {} is the store itself; nothing was written",
                ldif.display()
            ));
        }
        let io = |e: std::io::Error| format!("{}: {e}", target.display());
        let mut replacement = datasync::files::Replacement::begin(&target, 0o600).map_err(io)?;
        let count = {
            let mut out = std::io::BufWriter::new(replacement.file());
            let count = store.export_ldif(&mut out).map_err(|e| e.to_string())?;
            out.flush().map_err(io)?;
            count
        };
        replacement.commit().map_err(io)?;
        count
    };
    Ok(format!(
        "exported {count} entries from {}",
        store.path().display()
    ))
}

/// `datasync import FILE --into STORE`: the file's entries added in one transaction.
fn import(file: &Path, into: &str) -> Result<String, String> {
    let store = Store::open(store_path(into)).map_err(|e| e.to_string())?;
    let count = if file.as_os_str() == "-" {
        store.import_ldif(std::io::stdin().lock(), Path::new("standard input"))
    } else {
        let input = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        store.import_ldif(std::io::BufReader::new(input), file)
    }
    .map_err(|e| format!("{e}; nothing was imported"))?;
    store.commit().map_err(|e| e.to_string())?;
    Ok(format!(
        "imported {count} entries into {}",
        store.path().display()
    ))
}

/// The report on stderr: errors for a run that could not run, else the summary, the failed
/// rows and the messages.
fn print_report(report: &Report) {
    if report.status == datasync::RunStatus::Error {
        for d in &report.details {
            eprintln!("error: {}", d.message);
        }
        return;
    }
    eprintln!("{}", report.summary());
    for f in &report.failed {
        eprintln!(
            "  row {}{}: {}",
            f.row,
            f.key
                .as_ref()
                .map(|k| format!(" ({k})"))
                .unwrap_or_default(),
            f.message
        );
    }
    for d in &report.details {
        eprintln!("  {}", d.message);
    }
}

fn validate(path: &Path) -> ExitCode {
    let wire = match job::load(path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match job::compile(&wire, &TransformContext::default()) {
        Ok(plan) => {
            println!(
                "{}: valid ({} object type{})",
                plan.name,
                plan.objects.len(),
                if plan.objects.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{e}");
            }
            eprintln!("{}: {} mistake(s)", path.display(), errors.0.len());
            ExitCode::from(2)
        }
    }
}

enum CliError {
    Run(Error),
    Usage(String),
}

impl CliError {
    /// The report of a run that could not start.
    fn report(&self, job: &str, dry_run: bool) -> Report {
        match self {
            CliError::Run(e) => Report::from_error(job, dry_run, e),
            CliError::Usage(m) => {
                let mut r = Report::new(job, dry_run);
                r.status = datasync::RunStatus::Error;
                r.detail(datasync::report::DetailType::Error, m.clone());
                r
            }
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Run(e) => write!(f, "{e}"),
            CliError::Usage(m) => f.write_str(m),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Run(e)
    }
}

impl From<LifecycleError> for CliError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Job { job, errors } => CliError::Run(Error::Invalid { job, errors }),
            other => CliError::Usage(other.to_string()),
        }
    }
}

/// A loaded job file made into a lifecycle job: its source opener (the file its
/// `Source.File` names, relative to the job file, or `source`), the destination, and the
/// settings the file gives.
fn load_job(
    wire: job::DataSyncJob,
    job_path: &Path,
    source: Option<&str>,
    target: &Target,
    destination: Arc<dyn Destination>,
    hooks: Arc<dyn Hooks + Send + Sync>,
) -> Result<Job, CliError> {
    let name = job::job_name(&wire);
    let source_file = source_file(&wire, job_path);
    let open: OpenSource = match source {
        Some(url) if is_ldap_url(url) => {
            let config = ldap_config(
                target,
                url,
                target.source_bind_dn.as_deref(),
                "DATASYNC_SOURCE_BIND_PASSWORD",
            )?;
            Box::new(move || {
                LdapSource::connect(config.clone()).map(|s| Box::new(s) as Box<dyn Source + Send>)
            })
        }
        Some(url) if source::is_database_url(url) => {
            let config = database_config(target, url);
            Box::new(move || source::open_database(config.clone()))
        }
        // The embedded directory as the source: a store or an LDIF file.
        Some(url) if url.starts_with("db:") || url.starts_with("ldif:") => {
            let url = url.to_string();
            Box::new(move || {
                DirectorySource::open(&url).map(|s| Box::new(s) as Box<dyn Source + Send>)
            })
        }
        Some(path) => {
            let path = PathBuf::from(path);
            Box::new(move || source::open(&path))
        }
        None => match (source_file, job::setting(&wire, "Source.ConnectionString")) {
            (_, Some(url)) if source::is_database_url(url) => {
                let config = database_config(target, url);
                Box::new(move || source::open_database(config.clone()))
            }
            (Some(path), _) => Box::new(move || source::open(&path)),
            (None, _) => {
                return Err(CliError::Usage(format!(
                    "job \"{name}\" has no Source.File or Source.ConnectionString setting: pass \
                     --source FILE, --source postgres://… or --source ldap://…"
                )));
            }
        },
    };
    let mut job = Job::new(wire, open, destination)?.with_hooks(hooks);
    if target.threads > datasync::engine::MAX_WORKERS {
        eprintln!(
            "note: --threads {} is more than a run uses; it runs {} workers",
            target.threads,
            datasync::engine::MAX_WORKERS
        );
    }
    job.settings.threads = target.threads.min(datasync::engine::MAX_WORKERS);
    Ok(job)
}

/// A database source's connection: the URL, the password from `DATASYNC_SOURCE_PASSWORD`
/// (never an argument), and `--ca-file` for its certificate.
fn database_config(target: &Target, url: &str) -> source::DatabaseConfig {
    let mut config = source::DatabaseConfig::new(url);
    if let Ok(password) = std::env::var("DATASYNC_SOURCE_PASSWORD") {
        config = config.with_password(password);
    }
    if let Some(ca) = &target.ca_file {
        config = config.with_tls_verify(TlsVerify::CaFile(ca.clone()));
    }
    config
}

/// The file the job's `Source.File` setting names, relative to the job file.
fn source_file(wire: &job::DataSyncJob, job_path: &Path) -> Option<PathBuf> {
    job::setting(wire, "Source.File").map(|f| job_path.parent().unwrap_or(Path::new(".")).join(f))
}

/// The destination `target` names; `provider` is the job's Destination.ProviderName.
/// The file a table destination (`csv:PATH`, `xlsx:PATH`) names.
fn table_path(destination: &str) -> Option<&Path> {
    destination
        .strip_prefix("csv:")
        .or_else(|| destination.strip_prefix("xlsx:"))
        .map(Path::new)
}

/// The destination `target` names; `provider` is the job's Destination.ProviderName, `plan`
/// the compiled job (a table's columns come from it).
fn open_destination(
    target: &Target,
    job: &str,
    provider: Option<&str>,
    dry_run: bool,
    plan: Option<&datasync::Plan>,
) -> Result<Arc<dyn Destination>, CliError> {
    let destination_error = |source| Error::Destination {
        job: job.to_string(),
        source,
    };
    if source::is_database_url(&target.destination) {
        let Some(plan) = plan else {
            return Err(CliError::Usage(format!(
                "--destination {}: a table destination takes the columns of one job; use \
                 `datasync run`",
                datasync::ldap::without_userinfo(&target.destination)
            )));
        };
        let Some(table) = plan.table.as_deref() else {
            return Err(CliError::Usage(
                "a database destination is a table: run the job in table mode".into(),
            ));
        };
        let mut config = source::DatabaseConfig::new(target.destination.clone());
        if let Ok(password) = std::env::var("DATASYNC_DESTINATION_PASSWORD") {
            config = config.with_password(password);
        }
        if let Some(ca) = &target.ca_file {
            config = config.with_tls_verify(TlsVerify::CaFile(ca.clone()));
        }
        return Ok(Arc::new(
            TableDestination::database(config, table, TableSpec::from_plan(plan))
                .map_err(destination_error)?,
        ));
    }
    if let Some(path) = table_path(&target.destination) {
        let Some(plan) = plan else {
            return Err(CliError::Usage(format!(
                "--destination {}: a table destination takes the columns of one job; use                  `datasync run`",
                target.destination
            )));
        };
        let sheet = plan.table.as_deref().unwrap_or("Sheet1");
        return Ok(Arc::new(
            TableDestination::open(path, sheet, TableSpec::from_plan(plan))
                .map_err(destination_error)?,
        ));
    }
    if is_ldap_url(&target.destination) {
        let config = ldap_config(
            target,
            &target.destination,
            target.bind_dn.as_deref(),
            "DATASYNC_BIND_PASSWORD",
        )?;
        let kind = match target.server_kind.as_deref() {
            Some("ad") => ServerKind::ActiveDirectory,
            Some(_) => ServerKind::Ldap,
            None => ServerKind::from_provider_name(provider),
        };
        Ok(Arc::new(
            LdapDirectory::connect(config, kind)
                .map_err(destination_error)?
                .with_password_change_at_next_logon(target.must_change_password),
        ))
    } else if let Some(ldif_path) = target.destination.strip_prefix("ldif:") {
        Ok(Arc::new(
            LdifDirectory::open(ldif_path).map_err(destination_error)?,
        ))
    } else if let Some(store_path) = target.destination.strip_prefix("db:") {
        // A dry run writes nothing, not even a new empty store: it reads the store if there
        // is one, else plans against an empty directory.
        if dry_run {
            if Path::new(store_path).exists() {
                return Ok(Arc::new(
                    Store::open_to_read(store_path).map_err(destination_error)?,
                ));
            }
            return Ok(Arc::new(LdifDirectory::in_memory()));
        }
        Ok(Arc::new(
            Store::open(store_path).map_err(destination_error)?,
        ))
    } else {
        Err(CliError::Usage(format!(
            "--destination {}: expected db:PATH, ldif:PATH, csv:PATH, xlsx:PATH or an ldap:// or \
             ldaps:// URL",
            datasync::ldap::without_userinfo(&target.destination)
        )))
    }
}

fn runner_for(target: &Target) -> Runner {
    let store = target
        .state
        .as_ref()
        .map(|p| Arc::new(FileStateStore::new(p)) as Arc<dyn StateStore>);
    Runner::with(Arc::new(SystemClock), store)
}

fn run(args: &RunArgs, password_file: Option<PasswordFile>) -> Result<Report, CliError> {
    let mut given = BTreeMap::new();
    for v in &args.vars {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--var {v}: expected NAME=VALUE")))?;
        given.insert(name.to_string(), value.to_string());
    }
    // The job is checked (its file, its parameters, its source named) before the destination
    // is opened: a broken job touches nothing.
    let mut wire = job::load(&args.job).map_err(Error::from)?;
    let name = job::job_name(&wire);
    let provider = job::setting(&wire, "Destination.ProviderName").map(str::to_string);
    // A table destination runs the job in table mode (rows named by their keys); a job
    // written for a table cannot write to a directory.
    if table_path(&args.target.destination).is_some()
        || source::is_database_url(&args.target.destination)
    {
        job::set_setting(&mut wire, "Destination.IsTableProvider", "True");
    } else if job::setting(&wire, "Destination.IsTableProvider")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(CliError::Usage(format!(
            "job \"{name}\" writes a table (Destination.IsTableProvider): give --destination \
             csv:PATH, xlsx:PATH or a database (postgres://…, mysql://…)"
        )));
    }
    let mut job = load_job(
        wire,
        &args.job,
        args.source.as_deref(),
        &args.target,
        Arc::new(LdifDirectory::in_memory()),
        Arc::new(datasync::NoHooks),
    )?;
    let (plan, _) = job.plan(&given)?;
    // A server that cannot be reached at the start is a transient failure like any other:
    // --retries tries the connection again, with the same doubling waits as a run.
    let mut wait = Duration::from_secs(args.retry_wait).max(datasync::lifecycle::MIN_RETRY_WAIT);
    let mut attempt = 0;
    job.destination = loop {
        attempt += 1;
        match open_destination(
            &args.target,
            &name,
            provider.as_deref(),
            args.dry_run,
            Some(&plan),
        ) {
            Err(CliError::Run(Error::Destination { source, .. }))
                if source.is_transient() && attempt <= args.retries.unwrap_or(0) =>
            {
                eprintln!(
                    "attempt {attempt}: {source}; retrying in {} s",
                    wait.as_secs()
                );
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2).min(Duration::from_secs(300));
            }
            other => break other?,
        }
    };
    let dry_run = args.dry_run;
    let writes_at_once = is_ldap_url(&args.target.destination);
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos} rows {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let hooks = Arc::new(CliHooks {
        progress,
        passwords: password_file.as_ref().map(|_| Mutex::new(Vec::new())),
    });
    job.hooks = hooks.clone();
    job.settings.dry_run = dry_run;
    if let Some(minutes) = args.timeout {
        job.settings.task_session_timeout = Some(minutes);
    }
    if let Some(n) = args.retries {
        job.settings.max_retries = n;
    }
    job.settings.retry_wait = Duration::from_secs(args.retry_wait);
    let runner = runner_for(&args.target);
    let id = runner.submit_with(Arc::new(job), &given)?;
    // Ctrl-C cancels: rows in flight finish, nothing is deleted, the report says Aborted.
    let cancel = runner.clone();
    let _ = ctrlc::set_handler(move || {
        eprintln!("cancelling: rows in flight finish, no new rows start");
        cancel.cancel(id);
    });
    let report = runner
        .wait(id)
        .ok_or_else(|| CliError::Usage(format!("run {id} was lost")))?;
    if let Some(p) = &hooks.progress {
        p.finish_and_clear();
    }
    for attempt in runner.executions(id).iter().rev().skip(1).rev() {
        for d in &attempt.details {
            eprintln!("attempt {} failed, retried: {}", attempt.id, d.message);
        }
    }
    if let (Some(file), Some(list)) = (password_file, hooks.passwords.as_ref()) {
        let list = list.lock().unwrap_or_else(|p| p.into_inner());
        // The embedded directory keeps nothing of a run that could not commit: its passwords
        // were never set. An LDAP server keeps each write as it is made.
        let kept = writes_at_once || report.status != datasync::RunStatus::Error;
        if !kept || list.is_empty() {
            file.discard(if kept {
                "no password was set"
            } else {
                "the run's changes were not kept"
            });
        } else {
            file.write(&list)?;
        }
    }
    Ok(report)
}

/// The report's place: a file (replaced whole once the run is over), standard output (`-`),
/// or nowhere.
enum ReportOut {
    None,
    Stdout,
    File(PathBuf, datasync::files::Replacement),
}

impl ReportOut {
    fn write(self, report: &Report) -> Result<(), String> {
        match self {
            ReportOut::None => Ok(()),
            ReportOut::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", report.to_json())
                    .map_err(|e| format!("cannot write the report to standard output: {e}"))
            }
            ReportOut::File(path, mut replacement) => replacement
                .file()
                .write_all(report.to_json().as_bytes())
                .and_then(|()| replacement.commit())
                .map_err(|e| format!("cannot write the report to {}: {e}", path.display())),
        }
    }
}

/// The password file under way: a private temporary file beside its place, renamed over it
/// only once the passwords it lists are known to be set.
struct PasswordFile {
    path: PathBuf,
    replacement: datasync::files::Replacement,
}

/// The header every password file starts with: how a file datasync wrote is known again.
const PASSWORD_HEADER: &str = "dn,password";

impl PasswordFile {
    /// Makes the password file's place ready. The path must not be a symlink (it is never
    /// followed), nor an existing file other than a password file datasync wrote.
    fn prepare(path: &Path) -> Result<PasswordFile, String> {
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "--password-out {shown} is a symbolic link; a password file is never \
                     written through one"
                ));
            }
            Ok(meta) if !meta.is_file() => {
                return Err(format!("--password-out {shown} is not a file"));
            }
            Ok(_) => {
                let mut first = String::new();
                let ours = File::open(path)
                    .and_then(|f| {
                        use std::io::BufRead;
                        std::io::BufReader::new(f).read_line(&mut first)
                    })
                    .is_ok_and(|_| first.trim_end() == PASSWORD_HEADER);
                if !ours {
                    return Err(format!(
                        "--password-out {shown} already exists and is not a password file \
                         datasync wrote; name a new file"
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("--password-out {shown}: {e}")),
        }
        let mut replacement = datasync::files::Replacement::begin(path, 0o600)
            .map_err(|e| format!("cannot create {shown}: {e}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            replacement
                .file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot create {shown}: {e}"))?;
        }
        Ok(PasswordFile {
            path: path.to_path_buf(),
            replacement,
        })
    }

    /// Writes `list` and puts the file in place.
    fn write(mut self, list: &[(String, Secret)]) -> Result<(), CliError> {
        let fail = |e: &dyn std::fmt::Display| {
            CliError::Usage(format!("cannot write {}: {e}", self.path.display()))
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut text = w.write_record(PASSWORD_HEADER.split(','));
        for (dn, secret) in list {
            text = text.and(w.write_record([dn.as_str(), secret.expose()]));
        }
        let bytes = text
            .and_then(|()| w.into_inner().map_err(|e| e.into_error().into()))
            .map_err(|e| fail(&e))?;
        self.replacement
            .file()
            .write_all(&bytes)
            .map_err(|e| fail(&e))?;
        let path = self.path.clone();
        self.replacement
            .commit()
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))
    }

    /// Leaves the file as it was (says why when there is one).
    fn discard(self, why: &str) {
        if self.path.exists() {
            eprintln!("{} left as it was: {why}", self.path.display());
        }
    }
}

/// The files a run writes, made ready before it starts.
struct Outputs {
    report: ReportOut,
    passwords: Option<PasswordFile>,
}

impl Outputs {
    /// Checks every output path against the inputs and each other, then makes the report's
    /// and the password file's places ready (which proves their folders writable).
    fn prepare(args: &RunArgs, wire: Option<&job::DataSyncJob>) -> Result<Outputs, String> {
        let resolve = |what: &str, path: &Path| {
            datasync::files::resolve(path).map_err(|e| format!("{what} {}: {e}", path.display()))
        };
        let mut inputs: Vec<(String, PathBuf)> =
            vec![("the job file".into(), resolve("job", &args.job)?)];
        let source = match args.source.as_deref() {
            Some(s) if !is_ldap_url(s) && !source::is_database_url(s) => Some(PathBuf::from(
                s.strip_prefix("db:")
                    .or_else(|| s.strip_prefix("ldif:"))
                    .unwrap_or(s),
            )),
            Some(_) => None,
            None => wire.and_then(|w| source_file(w, &args.job)),
        };
        if let Some(source) = source
            && let Ok(resolved) = datasync::files::resolve(&source)
        {
            inputs.push(("the source".into(), resolved));
        }
        let mut outputs: Vec<(String, PathBuf)> = Vec::new();
        if let Some(dest) = args.target.destination.strip_prefix("ldif:")
            && !dest.is_empty()
        {
            let dest = resolve("--destination", Path::new(dest))?;
            let lock = PathBuf::from(format!("{}.lock", dest.display()));
            outputs.push(("the destination directory".into(), dest));
            outputs.push(("the destination's lock file".into(), lock));
        }
        if let Some(dest) = table_path(&args.target.destination) {
            let dest = resolve("--destination", dest)?;
            let lock = PathBuf::from(format!("{}.lock", dest.display()));
            outputs.push(("the destination table".into(), dest));
            outputs.push(("the destination table's lock file".into(), lock));
        }
        if let Some(dest) = args.target.destination.strip_prefix("db:")
            && !dest.is_empty()
        {
            let dest = resolve("--destination", Path::new(dest))?;
            let journal = PathBuf::from(format!("{}-journal", dest.display()));
            outputs.push(("the destination store".into(), dest));
            outputs.push(("the destination store's journal".into(), journal));
        }
        if let Some(state) = &args.target.state {
            outputs.push(("--state".into(), resolve("--state", state)?));
        }
        let report_path = args.report.as_deref().filter(|p| p.as_os_str() != "-");
        if let Some(report) = report_path {
            outputs.push(("--report".into(), resolve("--report", report)?));
        }
        let password_path = args.password_out.as_deref().filter(|_| !args.dry_run);
        if let Some(password) = password_path {
            // Not resolved through a symlink: one there is refused below.
            let absolute = datasync::files::resolve(&datasync::files::folder_of(password))
                .map_err(|e| format!("--password-out {}: {e}", password.display()))?
                .join(password.file_name().unwrap_or_default());
            outputs.push(("--password-out".into(), absolute));
        }
        for (i, (what, path)) in outputs.iter().enumerate() {
            let clash = inputs
                .iter()
                .chain(&outputs[..i])
                .find(|(_, other)| other == path);
            if let Some((other, _)) = clash {
                return Err(format!(
                    "{what} ({}) is {other}: nothing was written",
                    path.display()
                ));
            }
        }
        let report = match (&args.report, report_path) {
            (_, Some(path)) => ReportOut::File(
                path.to_path_buf(),
                datasync::files::Replacement::begin(&resolve("--report", path)?, 0o644)
                    .map_err(|e| format!("cannot write the report to {}: {e}", path.display()))?,
            ),
            (Some(_), None) => ReportOut::Stdout,
            (None, None) => ReportOut::None,
        };
        let passwords = password_path.map(PasswordFile::prepare).transpose()?;
        Ok(Outputs { report, passwords })
    }
}

fn schedule(args: &ScheduleArgs) -> ExitCode {
    match schedule_jobs(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn schedule_jobs(args: &ScheduleArgs) -> Result<(), CliError> {
    let wires = args
        .jobs
        .iter()
        .map(|path| Ok((path, job::load(path).map_err(Error::from)?)))
        .collect::<Result<Vec<_>, CliError>>()?;
    let (first, provider) = wires
        .first()
        .map(|(_, w)| {
            let provider = job::setting(w, "Destination.ProviderName").map(str::to_string);
            (job::job_name(w), provider)
        })
        .unwrap_or_default();
    let destination = open_destination(&args.target, &first, provider.as_deref(), false, None)?;
    let runner = runner_for(&args.target);
    let scheduler = Arc::new(Scheduler::new(runner.clone()));
    let hooks: Arc<dyn Hooks + Send + Sync> = Arc::new(datasync::NoHooks);
    // Jobs that share a jobInfo.collectionId run as one collection, in runOrder, on the
    // schedule their files give; the others run alone.
    let mut collections: BTreeMap<String, Vec<Arc<Job>>> = BTreeMap::new();
    for (path, wire) in wires {
        // Each job gets its own connection to a store, so that two jobs running at the same
        // moment are two transactions, kept apart by the store's lock (the second waits, or
        // fails as locked and is retried), never one transaction shared. A server's
        // connection pool, and an LDIF file (one lock per file), are shared.
        let destination = if args.target.destination.starts_with("db:") {
            open_destination(
                &args.target,
                &job::job_name(&wire),
                provider.as_deref(),
                false,
                None,
            )?
        } else {
            destination.clone()
        };
        let job = load_job(wire, path, None, &args.target, destination, hooks.clone())?;
        let collection = job
            .definition
            .job_info
            .get()
            .and_then(|i| i.collection_id.get())
            .filter(|v| !v.is_null())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        if let Some(id) = collection {
            collections.entry(id).or_default().push(Arc::new(job));
            continue;
        }
        let name = job.name();
        if job.settings.schedule.is_none() {
            return Err(CliError::Usage(format!(
                "{}: job \"{name}\" has no schedule (jobInfo.schedule, a cron expression)",
                path.display()
            )));
        }
        scheduler.add(Arc::new(job))?;
        match scheduler.job_details(&name) {
            Some(d) if d.is_enabled => eprintln!(
                "{name}: \"{}\" in {}, next at {}",
                d.cron_schedule_type.unwrap_or_default(),
                d.time_zone.unwrap_or_default(),
                d.next_fire_time.unwrap_or_else(|| "never".into())
            ),
            _ => eprintln!("{name}: disabled (jobInfo.enabled is false); it will not start"),
        }
    }
    for (id, mut jobs) in collections {
        jobs.sort_by_key(|j| j.settings.run_order);
        let name = format!("collection {id}");
        let mut schedules = jobs.iter().filter_map(|j| j.settings.schedule.clone());
        let Some(schedule) = schedules.next() else {
            return Err(CliError::Usage(format!(
                "{name}: none of its jobs has a schedule (jobInfo.schedule)"
            )));
        };
        if schedules.any(|s| s != schedule) {
            return Err(CliError::Usage(format!(
                "{name}: its jobs give different schedules; a collection runs on one"
            )));
        }
        let order: Vec<String> = jobs.iter().map(|j| j.name()).collect();
        let next = schedule.next_after(runner.clock().now());
        eprintln!(
            "{name} ({}): \"{}\" in {}, next at {}",
            order.join(", "),
            schedule.expression(),
            schedule.time_zone(),
            next.map_or_else(|| "never".into(), |t| t.to_rfc3339())
        );
        scheduler.add_collection(Arc::new(Collection { name, jobs }), schedule)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        eprintln!("stopping: no new runs; waiting for the running jobs to finish");
        flag.store(true, Ordering::SeqCst);
    })
    .map_err(|e| CliError::Usage(format!("cannot catch Ctrl-C: {e}")))?;
    let mut reporters = Vec::new();
    let watched = scheduler.clone();
    scheduler.run(&stop, |fired| match fired {
        Fired::Started { job, run } => {
            eprintln!("{job}: run {run} started");
            let runner = runner.clone();
            let job = job.clone();
            let run = *run;
            reporters.push(std::thread::spawn(move || {
                if let Some(report) = runner.wait(run) {
                    print_run(&job, run.0, &report);
                }
            }));
        }
        Fired::Skipped { job, running } => {
            eprintln!("{job}: skipped, run {running} is still running")
        }
        Fired::Refused { job, error } => eprintln!("{job}: not started: {error}"),
        Fired::CollectionStarted { collection } => {
            eprintln!("{collection}: started");
            let scheduler = watched.clone();
            let collection = collection.clone();
            reporters.push(std::thread::spawn(move || {
                let Some(report) = scheduler.wait_collection(&collection) else {
                    return;
                };
                for step in &report.steps {
                    match &step.outcome {
                        StepOutcome::Finished { run, report } => {
                            print_run(&step.job_name, *run, report)
                        }
                        StepOutcome::Refused { error } => {
                            eprintln!("{}: not started: {error}", step.job_name)
                        }
                        StepOutcome::NotRun => eprintln!("{}: not run", step.job_name),
                    }
                }
                match (&report.aborted_by, report.stopped) {
                    (Some(job), _) => {
                        eprintln!("{collection}: {job} failed and its onFailure is Abort")
                    }
                    (None, true) => eprintln!("{collection}: stopped"),
                    (None, false) => eprintln!("{collection}: finished"),
                }
            }));
        }
        Fired::CollectionSkipped { collection } => {
            eprintln!("{collection}: skipped, it is still running")
        }
    });
    for reporter in reporters {
        let _ = reporter.join();
    }
    eprintln!("stopped");
    Ok(())
}

/// One finished run, as `schedule` prints it.
fn print_run(job: &str, run: u64, report: &Report) {
    eprintln!("{job}: run {run}: {}", report.summary());
    for d in report.details.iter().filter(|d| d.details_type == 0) {
        eprintln!("{job}: run {run}: {}", d.message);
    }
}

fn is_ldap_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("ldap://") || lower.starts_with("ldaps://")
}

/// The connection settings for `url`: bind DN from the command line, its password from the
/// environment variable `password_var` (never an argument: arguments show in `ps`).
fn ldap_config(
    args: &Target,
    url: &str,
    bind_dn: Option<&str>,
    password_var: &str,
) -> Result<LdapConfig, CliError> {
    let mut config = LdapConfig::parse(url).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(dn) = bind_dn {
        let password = std::env::var(password_var).map_err(|_| {
            CliError::Usage(format!(
                "binding as {dn} needs its password in the environment variable {password_var}"
            ))
        })?;
        config = config.with_bind(dn, Secret::new(password));
    }
    if let Some(ca) = &args.ca_file {
        config.tls_verify = TlsVerify::CaFile(ca.clone());
    }
    if args.insecure_skip_tls_verify {
        eprintln!(
            "WARNING: --insecure-skip-tls-verify: the certificate of {} is not checked; anyone on \
             the network path can read the bind password and every password this run sets",
            config.url
        );
        config.tls_verify = TlsVerify::DangerouslyAcceptAnyCertificate;
    }
    if config.security == Security::Plain && bind_dn.is_some() {
        eprintln!(
            "warning: {} is not encrypted: the bind password crosses the network in clear text \
             (use ldaps:// or ?starttls)",
            config.url
        );
    }
    Ok(config)
}
