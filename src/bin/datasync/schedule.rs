//! `datasync schedule`: job files on their cron schedules, as collections where they share one.

use super::*;

pub(crate) fn schedule(args: &ScheduleArgs) -> ExitCode {
    match schedule_jobs(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn schedule_jobs(args: &ScheduleArgs) -> Result<(), CliError> {
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
