//! Opening what a job reads and writes: its source, its destination (a directory, a table or
//! a server), and the LDAP and database connection settings the command line takes.

use super::*;

/// A loaded job file made into a lifecycle job: its source opener (see [`source_opener`]),
/// the destination, and the settings the file gives.
pub(crate) fn load_job(
    wire: job::DataSyncJob,
    job_path: &Path,
    source: Option<&str>,
    target: &Target,
    destination: Arc<dyn Destination>,
    hooks: Arc<dyn Hooks + Send + Sync>,
) -> Result<Job, CliError> {
    let open = source_opener(&wire, job_path, source, target)?;
    job_with(wire, open, target, destination, hooks)
}

/// How a run opens the job's source: `source` (a file, an LDAP, database or embedded
/// directory URL), or else the file the job's `Source.File` names, relative to the job file,
/// or its `Source.ConnectionString`. Refused when the job names no source.
pub(crate) fn source_opener(
    wire: &job::DataSyncJob,
    job_path: &Path,
    source: Option<&str>,
    target: &Target,
) -> Result<OpenSource, CliError> {
    let name = job::job_name(wire);
    let source_file = source_file(wire, job_path);
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
        None => match (source_file, job::setting(wire, "Source.ConnectionString")) {
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
    Ok(open)
}

/// The lifecycle job: the job file, its source opener and destination, the command line's
/// thread count.
pub(crate) fn job_with(
    wire: job::DataSyncJob,
    open: OpenSource,
    target: &Target,
    destination: Arc<dyn Destination>,
    hooks: Arc<dyn Hooks + Send + Sync>,
) -> Result<Job, CliError> {
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
pub(crate) fn database_config(target: &Target, url: &str) -> source::DatabaseConfig {
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
pub(crate) fn source_file(wire: &job::DataSyncJob, job_path: &Path) -> Option<PathBuf> {
    job::source_path(wire, job_path)
}

/// The destination `target` names; `provider` is the job's Destination.ProviderName.
/// The file a table destination (`csv:PATH`, `xlsx:PATH`) names.
pub(crate) fn table_path(destination: &str) -> Option<&Path> {
    destination
        .strip_prefix("csv:")
        .or_else(|| destination.strip_prefix("xlsx:"))
        .map(Path::new)
}

/// The destination `target` names; `provider` is the job's Destination.ProviderName, `plan`
/// the compiled job (a table's columns come from it).
pub(crate) fn open_destination(
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
            TableDestination::database(config, table, plan.table_spec())
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
            TableDestination::open(path, sheet, plan.table_spec()).map_err(destination_error)?,
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

pub(crate) fn runner_for(target: &Target) -> Runner {
    let store = target
        .state
        .as_ref()
        .map(|p| Arc::new(FileStateStore::new(p)) as Arc<dyn StateStore>);
    Runner::with(Arc::new(SystemClock), store)
}

pub(crate) fn is_ldap_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("ldap://") || lower.starts_with("ldaps://")
}

/// The connection settings for `url`: bind DN from the command line, its password from the
/// environment variable `password_var` (never an argument: arguments show in `ps`).
pub(crate) fn ldap_config(
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
