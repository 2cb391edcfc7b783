//! The datasync command line.
//!
//! ```text
//! datasync run JOB.json [--source FILE|LDAP-URL] [--destination ldif:PATH|LDAP-URL]
//!                       [--bind-dn DN] [--source-bind-dn DN] [--ca-file PEM]
//!                       [--insecure-skip-tls-verify] [--server-kind ad|ldap] [--dry-run]
//!                       [--report FILE] [--password-out FILE] [--threads N] [--var NAME=VALUE]…
//! datasync validate JOB.json
//! ```
//! Bind passwords come from the environment: `DATASYNC_BIND_PASSWORD` (destination) and
//! `DATASYNC_SOURCE_BIND_PASSWORD` (LDAP source).
//!
//! Exit codes: 0 success, 1 finished with failures (or aborted), 2 could not run.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Parser, Subcommand};
use datasync::destination::{LdapDirectory, ServerKind};
use datasync::hooks::{HookContext, HookResult, PasswordSet, RowDone};
use datasync::ldap::{LdapConfig, Security, TlsVerify};
use datasync::report::RowFailure;
use datasync::source::{LdapSource, Source};
use datasync::transform::TransformContext;
use datasync::{Destination, Error, Hooks, LdifDirectory, Report, RunOptions, Secret, job, source};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Check a job and list every mistake.
    Validate {
        /// The job JSON.
        job: PathBuf,
    },
}

/// `datasync run`'s arguments.
#[derive(clap::Args)]
struct RunArgs {
    /// The job JSON.
    job: PathBuf,
    /// The source: a file (default: the job's Source.File setting, relative to the job file)
    /// or an LDAP URL with the search base as its path (ldaps://host/OU=Staff,DC=example,DC=com).
    #[arg(long)]
    source: Option<String>,
    /// Where to write: ldif:PATH (the embedded directory) or an LDAP server
    /// (ldap://host[:port], ldaps://host[:port], ldap://host?starttls).
    #[arg(long, default_value = "ldif:directory.ldif")]
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
    /// Compute the plan and the report; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the run report (JSON) here, also when the job cannot run.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the passwords set in this run here (CSV dn,password; mode 0600).
    #[arg(long)]
    password_out: Option<PathBuf>,
    /// Worker threads (default: one per core; for an LDAP destination, one per connection).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// A %NAME% variable for Static transforms, NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
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
        Command::Run(args) => {
            let name = job::load(&args.job)
                .map(|j| job::job_name(&j))
                .unwrap_or_else(|_| {
                    args.job
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
            let dry_run = args.dry_run;
            let result = run(&args);
            let (report_value, code) = match result {
                Ok(r) => {
                    let code = r.status.exit_code();
                    (r, code)
                }
                Err(message) => {
                    eprintln!("error: {message}");
                    let r = match &message {
                        CliError::Run(e) => Report::from_error(&name, dry_run, e),
                        CliError::Usage(m) => {
                            let mut r = Report::new(&name, dry_run);
                            r.status = datasync::RunStatus::Error;
                            r.detail(datasync::report::DetailType::Error, m.clone());
                            r
                        }
                    };
                    (r, 2)
                }
            };
            if report_value.status != datasync::RunStatus::Error {
                eprintln!("{}", report_value.summary());
                for f in &report_value.failed {
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
                for d in &report_value.details {
                    eprintln!("  {}", d.message);
                }
            }
            if let Some(path) = &args.report
                && let Err(e) = std::fs::write(path, report_value.to_json())
            {
                eprintln!("error: cannot write the report to {}: {e}", path.display());
                return ExitCode::from(2);
            }
            ExitCode::from(code as u8)
        }
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

fn run(args: &RunArgs) -> Result<Report, CliError> {
    let job_path = args.job.as_path();
    let wire = job::load(job_path).map_err(Error::from)?;
    let mut context = TransformContext::default();
    for v in &args.vars {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--var {v}: expected NAME=VALUE")))?;
        context
            .variables
            .insert(name.to_string(), value.to_string());
    }
    let plan = job::compile(&wire, &context).map_err(|errors| Error::Invalid {
        job: job::job_name(&wire),
        errors,
    })?;
    let source_error = |source| Error::Source {
        job: plan.name.clone(),
        object_type: plan.objects.first().map_or(1, |o| o.object_type.code()),
        field: None,
        source,
    };
    let mut source: Box<dyn Source + Send> = match &args.source {
        Some(url) if is_ldap_url(url) => {
            let config = ldap_config(
                args,
                url,
                args.source_bind_dn.as_deref(),
                "DATASYNC_SOURCE_BIND_PASSWORD",
            )?;
            Box::new(LdapSource::connect(config).map_err(source_error)?)
        }
        Some(path) => source::open(Path::new(path)).map_err(source_error)?,
        None => match &plan.source_file {
            Some(f) => {
                let path = job_path.parent().unwrap_or(Path::new(".")).join(f);
                source::open(&path).map_err(source_error)?
            }
            None => {
                return Err(CliError::Usage(
                    "the job has no Source.File setting: pass --source FILE or --source ldap://…"
                        .into(),
                ));
            }
        },
    };
    let destination_error = |source| Error::Destination {
        job: plan.name.clone(),
        source,
    };
    let directory: Box<dyn Destination> = if is_ldap_url(&args.destination) {
        let config = ldap_config(
            args,
            &args.destination,
            args.bind_dn.as_deref(),
            "DATASYNC_BIND_PASSWORD",
        )?;
        let kind = match args.server_kind.as_deref() {
            Some("ad") => ServerKind::ActiveDirectory,
            Some(_) => ServerKind::Ldap,
            None => ServerKind::from_provider_name(plan.destination_provider.as_deref()),
        };
        Box::new(LdapDirectory::connect(config, kind).map_err(destination_error)?)
    } else if let Some(ldif_path) = args.destination.strip_prefix("ldif:") {
        Box::new(LdifDirectory::open(ldif_path).map_err(destination_error)?)
    } else {
        return Err(CliError::Usage(format!(
            "--destination {}: expected ldif:PATH or an ldap:// or ldaps:// URL",
            args.destination
        )));
    };
    let (dry_run, threads) = (args.dry_run, args.threads);
    let password_out = args.password_out.as_deref();
    // Open the password file before anything is written: passwords that cannot be delivered
    // must not be set.
    let password_file = match password_out {
        Some(p) if !dry_run => Some((
            p,
            open_private(p)
                .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", p.display())))?,
        )),
        _ => None,
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos} rows {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let hooks = CliHooks {
        progress,
        passwords: password_file.as_ref().map(|_| Mutex::new(Vec::new())),
    };
    let options = RunOptions {
        threads,
        dry_run,
        ..Default::default()
    };
    let report = datasync::run(&plan, source.as_mut(), directory.as_ref(), &hooks, &options)?;
    if let Some(p) = &hooks.progress {
        p.finish_and_clear();
    }
    if let (Some((path, mut file)), Some(list)) = (password_file, hooks.passwords) {
        let list = list.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut text = Ok(());
        text = text.and(w.write_record(["dn", "password"]));
        for (dn, secret) in &list {
            text = text.and(w.write_record([dn.as_str(), secret.expose()]));
        }
        let bytes = text
            .and_then(|()| w.into_inner().map_err(|e| e.into_error().into()))
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(report)
}

fn is_ldap_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("ldap://") || lower.starts_with("ldaps://")
}

/// The connection settings for `url`: bind DN from the command line, its password from the
/// environment variable `password_var` (never an argument: arguments show in `ps`).
fn ldap_config(
    args: &RunArgs,
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

/// Creates (or truncates) a file only its owner can read.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is new; tighten an existing one too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}
