//! `datasync validate`, and how reports are printed.

use super::*;

/// The report on stderr: errors for a run that could not run, else the summary, the failed
/// rows and the messages.
pub(crate) fn print_report(report: &Report) {
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

pub(crate) fn validate(path: &Path) -> ExitCode {
    let wire = match job::load(path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match datasync::plan::compile(&wire, &TransformContext::default()) {
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

/// One finished run, as `schedule` prints it.
pub(crate) fn print_run(job: &str, run: u64, report: &Report) {
    eprintln!("{job}: run {run}: {}", report.summary());
    for d in report.details.iter().filter(|d| d.details_type == 0) {
        eprintln!("{job}: run {run}: {}", d.message);
    }
}
