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
use datasync::destination::DirectorySource;
use datasync::destination::{LdapDirectory, ServerKind, Store, TableDestination};
use datasync::hooks::{HookContext, HookResult, PasswordSet, RowDone};
use datasync::ldap::{LdapConfig, Security, TlsVerify};
use datasync::lifecycle::{
    FileStateStore, Fired, Job, LifecycleError, OpenSource, Runner, Scheduler, StateStore,
    StepOutcome, SystemClock,
};
use datasync::report::RowFailure;
use datasync::source::{LdapSource, Source};
use datasync::transform::TransformContext;
use datasync::{Destination, Error, Hooks, LdifDirectory, Report, Secret, job, source};
use indicatif::{ProgressBar, ProgressStyle};

// One module a command (`run`, `schedule`, `store` for export/import, `validate`), and
// `connect` for opening what jobs read and write; the arguments and the exit codes are here.
mod connect;
mod run;
mod schedule;
mod store;
mod validate;

use connect::*;
use run::*;
use schedule::*;
use store::*;
use validate::*;

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

/// The header every password file starts with: how a file datasync wrote is known again.
const PASSWORD_HEADER: &str = "dn,password";
