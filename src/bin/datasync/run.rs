//! `datasync run`: one job through the lifecycle runner, its report and password file, and the
//! checks of every output path before anything is written.

use super::*;

/// The CLI's hooks: a progress bar on a terminal, and password collection for --password-out.
pub(crate) struct CliHooks {
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

pub(crate) fn run(args: &RunArgs, password_file: Option<PasswordFile>) -> Result<Report, CliError> {
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
    let open = source_opener(&wire, &args.job, args.source.as_deref(), &args.target)?;
    // The plan first: a table destination opens with the plan's columns, and the job is then
    // made with the destination it will write to.
    let (plan, _) = datasync::lifecycle::plan_for(&wire, &Default::default(), &given)?;
    // A server that cannot be reached at the start is a transient failure like any other:
    // --retries tries the connection again, with the same doubling waits as a run.
    let retry = datasync::lifecycle::JobSettings {
        retry_wait: Duration::from_secs(args.retry_wait),
        max_retries: args.retries.unwrap_or(0),
        ..Default::default()
    }
    .retry_policy();
    let mut attempt = 0;
    let destination = loop {
        attempt += 1;
        match open_destination(
            &args.target,
            &name,
            provider.as_deref(),
            args.dry_run,
            Some(&plan),
        ) {
            Err(CliError::Run(Error::Destination { source, .. }))
                if source.is_transient() && attempt < retry.attempts =>
            {
                let wait = retry.wait(attempt);
                eprintln!(
                    "attempt {attempt}: {source}; retrying in {} s",
                    wait.as_secs()
                );
                std::thread::sleep(wait);
            }
            other => break other?,
        }
    };
    let mut job = job_with(
        wire,
        open,
        &args.target,
        destination,
        Arc::new(datasync::NoHooks),
    )?;
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
pub(crate) enum ReportOut {
    None,
    Stdout,
    File(PathBuf, datasync::files::Replacement),
}

impl ReportOut {
    pub(crate) fn write(self, report: &Report) -> Result<(), String> {
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
pub(crate) struct PasswordFile {
    path: PathBuf,
    replacement: datasync::files::Replacement,
}

impl PasswordFile {
    /// Makes the password file's place ready. The path must not be a symlink (it is never
    /// followed), nor an existing file other than a password file datasync wrote.
    pub(crate) fn prepare(path: &Path) -> Result<PasswordFile, String> {
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
    pub(crate) fn write(mut self, list: &[(String, Secret)]) -> Result<(), CliError> {
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
    pub(crate) fn discard(self, why: &str) {
        if self.path.exists() {
            eprintln!("{} left as it was: {why}", self.path.display());
        }
    }
}

/// The files a run writes, made ready before it starts.
pub(crate) struct Outputs {
    pub(crate) report: ReportOut,
    pub(crate) passwords: Option<PasswordFile>,
}

impl Outputs {
    /// Checks every output path against the inputs and each other, then makes the report's
    /// and the password file's places ready (which proves their folders writable).
    pub(crate) fn prepare(
        args: &RunArgs,
        wire: Option<&job::DataSyncJob>,
    ) -> Result<Outputs, String> {
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
