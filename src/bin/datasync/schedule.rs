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
    let mut jobs = Vec::with_capacity(wires.len());
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
        jobs.push(load_job(
            wire,
            path,
            None,
            &args.target,
            destination,
            hooks.clone(),
        )?);
    }
    // Jobs that share a jobInfo.collectionId run as one collection, in runOrder, on the
    // schedule their files give; the others run alone (the library's grouping).
    for name in scheduler.add_jobs(jobs)? {
        if let Some((collection, schedule)) = scheduler.collection(&name) {
            let order: Vec<String> = collection.jobs.iter().map(|j| j.name()).collect();
            eprintln!(
                "{name} ({}): \"{}\" in {}, next at {}",
                order.join(", "),
                schedule.expression(),
                schedule.time_zone(),
                scheduler
                    .next_execution(&name)
                    .map_or_else(|| "never".into(), datasync::clock::iso)
            );
        } else if let Some(d) = scheduler.job_details(&name) {
            if d.is_enabled {
                eprintln!(
                    "{name}: \"{}\" in {}, next at {}",
                    d.cron_schedule_type.unwrap_or_default(),
                    d.time_zone.unwrap_or_default(),
                    d.next_fire_time.unwrap_or_else(|| "never".into())
                );
            } else {
                eprintln!("{name}: disabled (jobInfo.enabled is false); it will not start");
            }
        }
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
                        other => eprintln!("{}: {other:?}", step.job_name),
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
        other => eprintln!("{other:?}"),
    });
    for reporter in reporters {
        let _ = reporter.join();
    }
    eprintln!("stopped");
    Ok(())
}
