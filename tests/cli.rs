//! The command line, as a user drives it: exit codes, reports, and bad input that writes nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn binary() -> PathBuf {
    support::datasync_binary()
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let c = Case {
            dir: tempfile::tempdir().unwrap(),
        };
        support::write_workbook(
            &c.path("people.xlsx"),
            &support::people(),
            &support::groups(),
        );
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the main job (with `edit` applied) next to the workbook.
    fn job(&self, edit: impl FnOnce(&mut Value)) -> PathBuf {
        self.job_named("job.json", edit)
    }

    /// [`job`](Self::job), in a file of its own.
    fn job_named(&self, file: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let mut job: Value = serde_json::from_str(
            &std::fs::read_to_string("fixtures/jobs/excel-to-ad.json").unwrap(),
        )
        .unwrap();
        for s in job["settings"].as_array_mut().unwrap() {
            if s["key"] == "Source.File" {
                s["value"] = json!("people.xlsx");
            }
        }
        edit(&mut job);
        let path = self.path(file);
        std::fs::write(&path, job.to_string()).unwrap();
        path
    }

    /// Runs `datasync schedule JOBS…` until the directory file satisfies `done` (at most a
    /// minute), then interrupts it as Ctrl-C would and returns what it printed.
    fn schedule_until(&self, jobs: &[&Path], done: impl Fn(&str) -> bool) -> Output {
        let child = Command::new(binary())
            .arg("schedule")
            .args(jobs)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.directory().is_some_and(|t| done(&t)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the schedule did not run within a minute"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let interrupted = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(interrupted.success());
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// The default store (`directory.db`) as LDIF, through `datasync export`; `None` while
    /// there is none.
    fn directory(&self) -> Option<String> {
        let out = self.run(&["export", "directory.db", "--ldif", "-"]);
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }

    /// [`run`](Self::run) with these environment variables set.
    fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(binary())
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_main_job_runs_and_reports() {
    let c = Case::new();
    let job = c.job(|_| {});
    let out = c.run(&["run", job.to_str().unwrap(), "--report", "r.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("ExcelToAD: FinishedSuccess — read 12, added 12"),
        "{}",
        text(&out)
    );
    assert!(c.path("directory.db").exists(), "the default destination");
    let r = report(&c.path("r.json"));
    for key in [
        "jobName",
        "status",
        "dryRun",
        "startTime",
        "stopTime",
        "duration",
        "executingNodeName",
        "counts",
        "added",
        "modified",
        "deleted",
        "deleteFailed",
        "failed",
        "updatedIdMap",
        "details",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}: {r}");
    }
    assert_eq!(r["counts"]["added"], 12);
    let again = c.run(&["run", job.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0));
    assert!(text(&again).contains("unchanged 12"), "{}", text(&again));
}

#[test]
fn validate_lists_every_mistake_and_exits_2() {
    let c = Case::new();
    let good = c.job(|_| {});
    let out = c.run(&["validate", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("ExcelToAD: valid (2 object types)"));
    let bad = c.job(|j| {
        j["fieldsMap"][3]["transform"] = json!("Foo:x=1");
        j["syncQuery"].as_array_mut().unwrap().remove(0);
    });
    let out = c.run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("fieldsMap[3].transform: unknown transform \"Foo\""),
        "{t}"
    );
    assert!(
        t.contains("syncQuery: no source query for object type 1"),
        "{t}"
    );
}

/// Every kind of bad input: exit 2, a report that says why, and the directory file untouched.
#[test]
fn bad_input_writes_nothing() {
    let c = Case::new();
    let job = c.job(|_| {});
    assert_eq!(
        c.run(&["run", job.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let ldif = c.path("directory.db");
    let before = std::fs::read(&ldif).unwrap();
    let mut ps = support::people();
    ps[0].title = "Chair".into(); // a change a successful run would write

    type Edit = Box<dyn Fn(&Case) -> PathBuf>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "is not valid",
            Box::new(|c: &Case| c.job(|j| j["fieldsMap"][1]["transform"] = json!("Nope:a=b"))),
        ),
        (
            "unknown transform \"Nope\"",
            Box::new(|c: &Case| c.job(|j| j["fieldsMap"][1]["transform"] = json!("Nope:a=b"))),
        ),
        (
            "fieldsMap[3].isKey: invalid type",
            Box::new(|c: &Case| c.job(|j| j["fieldsMap"][3]["isKey"] = json!("yes"))),
        ),
        (
            "sheet \"Staff\" is not in the workbook (its sheets: TTSheet1, Groups)",
            Box::new(|c: &Case| {
                c.job(|j| j["syncQuery"][2]["query"] = json!("SELECT * FROM [Staff$]"))
            }),
        ),
        (
            "object type 1, fieldsMap[7] (department): column \"Dept\" is not in the source",
            Box::new(|c: &Case| c.job(|j| j["fieldsMap"][7]["sourceField"] = json!("Dept"))),
        ),
        (
            "syntax error",
            Box::new(|c: &Case| {
                c.job(|j| j["syncQuery"][0]["query"] = json!("SELEKT * FROM [TTSheet1$]"))
            }),
        ),
        (
            "no such column: Salary",
            Box::new(|c: &Case| {
                c.job(|j| {
                    j["syncQuery"][0]["query"] =
                        json!("SELECT * FROM [TTSheet1$] WHERE Salary > 10")
                })
            }),
        ),
        (
            "is not a readable workbook",
            Box::new(|c: &Case| {
                std::fs::write(c.path("broken.xlsx"), b"PK\x03\x04 not really a zip").unwrap();
                c.job(|j| {
                    for s in j["settings"].as_array_mut().unwrap() {
                        if s["key"] == "Source.File" {
                            s["value"] = json!("broken.xlsx");
                        }
                    }
                })
            }),
        ),
        (
            "cannot read",
            Box::new(|c: &Case| {
                c.job(|j| {
                    for s in j["settings"].as_array_mut().unwrap() {
                        if s["key"] == "Source.File" {
                            s["value"] = json!("missing.xlsx");
                        }
                    }
                })
            }),
        ),
    ];
    for (needle, make) in cases {
        support::write_workbook(&c.path("people.xlsx"), &ps, &support::groups());
        let job = make(&c);
        let out = c.run(&["run", job.to_str().unwrap(), "--report", "bad.json"]);
        assert_eq!(out.status.code(), Some(2), "{needle}: {}", text(&out));
        assert!(
            text(&out).contains(needle),
            "expected {needle:?} in {}",
            text(&out)
        );
        assert_eq!(
            std::fs::read(&ldif).unwrap(),
            before,
            "{needle}: the directory changed"
        );
        let r = report(&c.path("bad.json"));
        assert_eq!(r["status"], "Error");
        assert!(
            r["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{r}"
        );
        assert_eq!(r["details"][0]["detailsType"], 0);
    }

    // a damaged directory file is an error naming its line, and is left as it was
    let broken = c.path("broken.ldif");
    std::fs::write(&broken, "version: 1\n\ndn: CN=a,DC=lab\ncn a\n").unwrap();
    let job = c.job(|_| {});
    let out = c.run(&[
        "run",
        job.to_str().unwrap(),
        "--destination",
        "ldif:broken.ldif",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("broken.ldif: line 4: \"cn a\" is not an attribute line"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        "version: 1\n\ndn: CN=a,DC=lab\ncn a\n"
    );
}

#[test]
fn rows_that_fail_exit_1() {
    let c = Case::new();
    let mut ps = support::people();
    ps[3].id = 1001;
    support::write_workbook(&c.path("people.xlsx"), &ps, &support::groups());
    let job = c.job(|_| {});
    let out = c.run(&["run", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("row 5 (1001): duplicate key \"1001\": also on row 2"),
        "{}",
        text(&out)
    );
}

#[test]
fn passwords_go_to_a_private_file_and_nowhere_else() {
    let c = Case::new();
    let job = c.job(|j| {
        j["fieldsMap"][12]["options"] = json!("{\"passwordLength\":10,\"includeUppercaseAlphabets\":true,\"includeLowercaseAlphabets\":true,\"includeDigits\":true,\"passwordType\":1}");
    });
    let out = c.run(&[
        "run",
        job.to_str().unwrap(),
        "--password-out",
        "pw.csv",
        "--report",
        "r.json",
        "--threads",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pw = c.path("pw.csv");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let mut reader = csv::Reader::from_path(&pw).unwrap();
    assert_eq!(reader.headers().unwrap(), vec!["dn", "password"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 8);
    let ldif = c.directory().unwrap();
    let report = std::fs::read_to_string(c.path("r.json")).unwrap();
    for row in &rows {
        let password = &row[1];
        assert_eq!(password.len(), 10);
        assert!(!ldif.contains(password), "plain password in the directory");
        assert!(!report.contains(password), "password in the report");
        assert!(!text(&out).contains(password), "password on the terminal");
    }
    // A second run sets no password: the file of the first is left as it was, not emptied.
    let first = std::fs::read_to_string(&pw).unwrap();
    let out = c.run(&["run", job.to_str().unwrap(), "--password-out", "pw.csv"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("left as it was: no password was set"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), first);
}

#[test]
fn a_dry_run_writes_no_file() {
    let c = Case::new();
    let job = c.job(|_| {});
    let out = c.run(&[
        "run",
        job.to_str().unwrap(),
        "--dry-run",
        "--report",
        "r.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!c.path("directory.db").exists());
    let r = report(&c.path("r.json"));
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["counts"]["added"], 12);
}

#[test]
fn parameters_state_and_retries_on_the_command_line() {
    let c = Case::new();
    // Declared parameters are checked before anything is written.
    let job = c.job(|j| {
        for f in j["fieldsMap"].as_array_mut().unwrap() {
            if f["destinationField"] == "description" && f["objectType"] == 1 {
                f["transform"] = json!("Static:value=Synchronised for %Company%");
            }
        }
        j["parameters"] = json!({"Company": {"dataType": "String", "required": true}});
    });
    let out = c.run(&["run", job.to_str().unwrap(), "--var", "Colour=red"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("parameter \"Company\": a value is required"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("parameter \"Colour\": the job has no such parameter"));
    assert!(!c.path("directory.db").exists(), "a refused run wrote");
    let out = c.run(&["run", job.to_str().unwrap(), "--var", "Company=Acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ldif = c.directory().unwrap();
    assert_eq!(
        ldif.matches("description: Synchronised for Acme").count(),
        support::people().len()
    );

    // --state keeps the delta watermark: the second run reads no unchanged user.
    let c = Case::new();
    let job = c.job(|j| {
        j["syncQuery"][0]["timeStampField"] = json!("Hired");
        j["syncQuery"][0]["updateAll"] = json!(false);
    });
    let args = [
        "run",
        job.to_str().unwrap(),
        "--state",
        "state.json",
        "--report",
        "r.json",
    ];
    let out = c.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state: Value = report(&c.path("state.json"));
    assert!(state.to_string().contains("ExcelToAD"), "{state}");
    let out = c.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&c.path("r.json"));
    assert_eq!(r["counts"]["read"], support::groups().len(), "{r}");

    // --retries: an unreachable server is tried again, then the run fails with the reason.
    let out = c.run(&[
        "run",
        job.to_str().unwrap(),
        "--destination",
        "ldap://127.0.0.1:1",
        "--retries",
        "1",
        "--retry-wait",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    // A wait of 0 still backs off.
    assert_eq!(t.matches("retrying in 1 s").count(), 1, "{t}");
    assert!(
        t.contains("error: job \"ExcelToAD\": destination: ldap://127.0.0.1:1 is unavailable"),
        "{t}"
    );
}

#[test]
fn schedule_runs_jobs_on_their_cron_until_ctrl_c() {
    let c = Case::new();
    // No schedule: refused, with the reason.
    let plain = c.job(|_| {});
    let out = c.run(&["schedule", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("has no schedule"), "{}", text(&out));

    // Every second (croner's optional seconds field).
    let job = c.job(|j| {
        j["jobInfo"]["schedule"] = json!("* * * * * *");
        j["jobInfo"]["enabled"] = json!(true);
    });
    let synced = |t: &str| t.matches("description: Synchronised by datasync").count();
    let out = c.schedule_until(&[&job], |t| synced(t) == support::people().len());
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("ExcelToAD: \"* * * * * *\" in UTC, next at"),
        "{t}"
    );
    assert!(t.contains("ExcelToAD: run 1 started"), "{t}");
    assert!(t.contains("added 12"), "{t}");
    assert!(t.ends_with("stopped\n"), "{t}");
}

#[test]
fn schedule_runs_jobs_of_one_collection_in_run_order() {
    let c = Case::new();
    let users = c.job_named("users.json", |j| {
        support::users_only(j);
        j["jobInfo"]["name"] = json!("Users");
        j["jobInfo"]["collectionId"] = json!(7);
        j["jobInfo"]["runOrder"] = json!(1);
        j["jobInfo"]["schedule"] = json!("* * * * * *");
        j["jobInfo"]["enabled"] = json!(true);
    });
    // Listed first, runs second; it has no schedule of its own: the collection's is used.
    let groups = c.job_named("groups.json", |j| {
        support::groups_only(j);
        j["jobInfo"]["name"] = json!("Groups");
        j["jobInfo"]["collectionId"] = json!(7);
        j["jobInfo"]["runOrder"] = json!(2);
    });
    let both = |t: &str| {
        t.matches("objectClass: user").count() == support::people().len()
            && t.matches("objectClass: group").count() == support::groups().len()
    };
    let out = c.schedule_until(&[&groups, &users], both);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("collection 7 (Users, Groups): \"* * * * * *\" in UTC"),
        "{t}"
    );
    assert!(t.contains("collection 7: started"), "{t}");
    let users_done = t.find("Users: run").expect("Users ran");
    let groups_done = t.find("Groups: run").expect("Groups ran");
    assert!(users_done < groups_done, "{t}");
    assert!(t.contains("collection 7: finished"), "{t}");

    // Two schedules in one collection: refused.
    let other = c.job_named("groups.json", |j| {
        support::groups_only(j);
        j["jobInfo"]["name"] = json!("Groups");
        j["jobInfo"]["collectionId"] = json!(7);
        j["jobInfo"]["schedule"] = json!("0 3 * * *");
    });
    let out = c.run(&["schedule", users.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("collection 7: its jobs give different schedules"),
        "{}",
        text(&out)
    );
}

/// The main job with a generated password (so that every new user gets one to deliver).
fn job_with_generated_passwords(c: &Case) -> PathBuf {
    c.job(|j| {
        j["fieldsMap"][12]["options"] = json!("{\"passwordLength\":10,\"includeUppercaseAlphabets\":true,\"includeLowercaseAlphabets\":true,\"includeDigits\":true,\"passwordType\":1}");
    })
}

/// Every file a run might write, with its bytes: what "nothing was written" compares.
fn snapshot(c: &Case) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(c.dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn an_output_that_names_an_input_or_another_output_is_refused_before_anything_is_written() {
    let c = Case::new();
    let job = job_with_generated_passwords(&c);
    let job = job.to_str().unwrap();
    assert_eq!(c.run(&["run", job]).status.code(), Some(0));
    std::os::unix::fs::symlink("directory.db", c.path("alias.db")).unwrap();
    let before = snapshot(&c);
    let cases: &[(&[&str], &str)] = &[
        (&["--report", "job.json"], "--report"),
        (&["--report", "directory.db"], "--report"),
        (&["--report", "alias.db"], "--report"),
        (&["--report", "people.xlsx"], "--report"),
        (&["--report", "directory.db-journal"], "--report"),
        (&["--password-out", "directory.db"], "--password-out"),
        (&["--password-out", "job.json"], "--password-out"),
        (&["--password-out", "./people.xlsx"], "--password-out"),
        (
            &["--report", "out.csv", "--password-out", "out.csv"],
            "--password-out",
        ),
        (&["--state", "r.json", "--report", "r.json"], "--report"),
        (&["--state", "job.json"], "--state"),
        (
            &["--destination", "ldif:job.json"],
            "the destination directory",
        ),
        (
            &["--destination", "ldif:people.xlsx"],
            "the destination directory",
        ),
        (&["--destination", "db:job.json"], "the destination store"),
        (
            &["--destination", "ldif:x.ldif", "--report", "x.ldif.lock"],
            "--report",
        ),
    ];
    for (extra, what) in cases {
        let mut args = vec!["run", job];
        args.extend_from_slice(extra);
        let out = c.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(what) && text(&out).contains("nothing was written"),
            "{args:?}: {}",
            text(&out)
        );
        assert_eq!(snapshot(&c), before, "{args:?} wrote a file");
    }
}

#[test]
fn the_password_file_is_new_or_ours_never_through_a_symlink_and_only_for_kept_changes() {
    let c = Case::new();
    let job = job_with_generated_passwords(&c);
    let job = job.to_str().unwrap();
    // A symlink is never followed: its target keeps its content.
    std::fs::write(c.path("precious.txt"), "mine").unwrap();
    std::os::unix::fs::symlink("precious.txt", c.path("pw-link.csv")).unwrap();
    let out = c.run(&["run", job, "--password-out", "pw-link.csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(c.path("precious.txt")).unwrap(),
        "mine"
    );
    assert!(!c.path("directory.db").exists(), "the run started");
    // A file datasync did not write is not replaced.
    let out = c.run(&["run", job, "--password-out", "precious.txt"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a password file"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(c.path("precious.txt")).unwrap(),
        "mine"
    );
    // A run that cannot start leaves an earlier password file as it was.
    std::fs::write(c.path("pw.csv"), "dn,password\nCN=x,DC=lab,secret1A\n").unwrap();
    let out = c.run(&[
        "run",
        job,
        "--password-out",
        "pw.csv",
        "--source",
        "missing.xlsx",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(c.path("pw.csv")).unwrap(),
        "dn,password\nCN=x,DC=lab,secret1A\n"
    );
    // Its own earlier file is replaced whole, private.
    let out = c.run(&["run", job, "--password-out", "pw.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = std::fs::read_to_string(c.path("pw.csv")).unwrap();
    assert_eq!(written.lines().count(), 9, "{written}");
    assert!(!written.contains("secret1A"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.path("pw.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // No temporary file is left beside it.
    let left: Vec<String> = snapshot(&c)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_report_that_cannot_be_written_stops_the_run_before_it_writes() {
    let c = Case::new();
    let job = c.job(|_| {});
    let out = c.run(&[
        "run",
        job.to_str().unwrap(),
        "--report",
        "no-such-folder/r.json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no-such-folder"), "{}", text(&out));
    assert!(
        !c.path("directory.db").exists(),
        "the directory was written"
    );
    // `-` is standard output, not a file named `-`.
    let out = c.run(&["run", job.to_str().unwrap(), "--report", "-"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["counts"]["added"], 12);
    assert!(!c.path("-").exists());
    // An existing report is replaced whole, through a symlink, keeping its mode.
    std::fs::write(c.path("real.json"), "old").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(c.path("real.json"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("real.json", c.path("r.json")).unwrap();
    let out = c.run(&["run", job.to_str().unwrap(), "--report", "r.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::symlink_metadata(c.path("r.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(report(&c.path("real.json"))["counts"]["unchanged"], 12);
    let mode = std::fs::metadata(c.path("real.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn the_directory_file_keeps_its_link_its_mode_and_a_read_only_file() {
    use std::os::unix::fs::PermissionsExt;
    let c = Case::new();
    let job = c.job(|_| {});
    let job = job.to_str().unwrap();
    std::fs::create_dir(c.path("store")).unwrap();
    std::fs::write(c.path("store/d.ldif"), "").unwrap();
    std::fs::set_permissions(
        c.path("store/d.ldif"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::os::unix::fs::symlink("store/d.ldif", c.path("link.ldif")).unwrap();
    // A stale temporary file of an earlier, killed run is removed.
    std::fs::write(c.path("store/.d.ldif.datasync-Ab12Cd.tmp"), "half").unwrap();
    let out = c.run(&["run", job, "--destination", "ldif:link.ldif"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::symlink_metadata(c.path("link.ldif"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let written = std::fs::read_to_string(c.path("store/d.ldif")).unwrap();
    assert!(written.contains("employeeID: "), "{written}");
    let mode = std::fs::metadata(c.path("store/d.ldif"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "the file's mode changed");
    assert!(!c.path("store/.d.ldif.datasync-Ab12Cd.tmp").exists());
    // The lock is on the file, not on the name it was given.
    let lock = c.path("store/d.ldif.lock");
    assert!(lock.exists(), "the lock sits beside the real file");
    // A read-only file is refused, not replaced.
    std::fs::set_permissions(
        c.path("store/d.ldif"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let mut people = support::people();
    people[0].title = "Chair".into();
    support::write_workbook(&c.path("people.xlsx"), &people, &support::groups());
    let out = c.run(&["run", job, "--destination", "ldif:store/d.ldif"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("read-only"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(c.path("store/d.ldif")).unwrap(),
        written
    );
    // An empty path says so.
    let out = c.run(&["run", job, "--destination", "ldif:"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("path is empty"), "{}", text(&out));
}

#[test]
fn secrets_stay_out_of_the_directory_the_report_and_the_terminal() {
    let c = Case::new();
    // A password mapped straight to userPassword is stored hashed.
    let job = c.job(|j| {
        let fields = j["fieldsMap"].as_array_mut().unwrap();
        fields.retain(|f| f["destinationField"] != "password");
        fields.push(
            json!({"objectType": 1, "sourceField": "", "destinationField": "userPassword",
            "transform": "Static:value=Plain-Text-9", "isKey": false, "forCreateOnly": false}),
        );
    });
    let out = c.run(&["run", job.to_str().unwrap(), "--report", "r.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ldif = c.directory().unwrap();
    assert!(
        !ldif.contains("Plain-Text-9"),
        "a plain password in the directory"
    );
    assert!(ldif.contains("userPassword: {SSHA256}"), "{ldif}");
    assert!(
        !std::fs::read_to_string(c.path("r.json"))
            .unwrap()
            .contains("Plain-Text-9")
    );
    // A second run finds the password set: nothing changes.
    let out = c.run(&["run", job.to_str().unwrap()]);
    assert!(text(&out).contains("unchanged 12"), "{}", text(&out));

    // datasync's own environment never reaches an attribute.
    for spelling in [
        "%DATASYNC_BIND_PASSWORD%",
        "%ENV:DATASYNC_BIND_PASSWORD%",
        "%ENV:datasync_bind_password%",
    ] {
        let job = c.job_named("env.json", |j| {
            j["fieldsMap"][11]["transform"] = json!(format!("Static:value={spelling}"));
        });
        let out = c.run_with_env(
            &[
                "run",
                job.to_str().unwrap(),
                "--destination",
                "ldif:env.ldif",
            ],
            &[("DATASYNC_BIND_PASSWORD", "bind-Secret-7")],
        );
        assert_eq!(out.status.code(), Some(2), "{spelling}: {}", text(&out));
        assert!(!text(&out).contains("bind-Secret-7"));
        assert!(!c.path("env.ldif").exists());
    }
    // A variable the job names with ENV: is read.
    let job = c.job_named("env.json", |j| {
        j["fieldsMap"][11]["transform"] = json!("Static:value=Site %ENV:SITE_NAME%");
    });
    let out = c.run_with_env(
        &[
            "run",
            job.to_str().unwrap(),
            "--destination",
            "ldif:env.ldif",
        ],
        &[("SITE_NAME", "Leeds")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read_to_string(c.path("env.ldif"))
            .unwrap()
            .contains("description: Site Leeds")
    );

    // Credentials in a URL are refused, and never echoed.
    let job = c.job(|_| {});
    for url in [
        "ldap://admin:url-Secret-3@127.0.0.1:9",
        "ldaps://cn=a:url-Secret-3@localhost",
    ] {
        let out = c.run(&[
            "run",
            job.to_str().unwrap(),
            "--destination",
            url,
            "--report",
            "u.json",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("credentials in the URL"),
            "{}",
            text(&out)
        );
        assert!(!text(&out).contains("url-Secret-3"), "{}", text(&out));
        assert!(
            !std::fs::read_to_string(c.path("u.json"))
                .unwrap()
                .contains("url-Secret-3")
        );
        let out = c.run(&["run", job.to_str().unwrap(), "--source", url]);
        assert!(!text(&out).contains("url-Secret-3"), "{}", text(&out));
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
}

#[test]
fn mistakes_in_a_job_are_refused_at_load_once_each() {
    let c = Case::new();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|j| j["fieldsMap"][7]["destinationField"] = json!("given Name,=x")),
            "is not an LDAP attribute name",
        ),
        (
            Box::new(|j| j["fieldsMap"][7]["destinationField"] = json!("info\nobjectClass")),
            "is not an LDAP attribute name",
        ),
        (
            Box::new(|j| j["fieldsMap"][7]["destinationField"] = json!("info:x")),
            "is not an LDAP attribute name",
        ),
        (
            Box::new(|j| j["fieldsMap"][8]["transform"] = json!("Date:field=Hired;to=%Y-%m-%d %z")),
            "cannot be written",
        ),
        (
            Box::new(|j| j["objectsOption"][0]["containerOption"] = json!("9")),
            "\"9\" is not 1",
        ),
    ];
    for (edit, expected) in cases {
        let job = c.job(|j| edit(j));
        let out = c.run(&["validate", job.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains(expected), "{t}");
        assert!(t.contains("1 mistake(s)"), "one mistake, said once: {t}");
        let out = c.run(&["run", job.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(!c.path("directory.db").exists());
    }
    // A job-wide setting that is wrong is one mistake, however many object types read it.
    let job = c.job(|j| support::set_setting(j, "Destination.DeleteThreshold", "lots"));
    let out = c.run(&["validate", job.to_str().unwrap()]);
    assert_eq!(text(&out).matches("\"lots\"").count(), 1, "{}", text(&out));

    // A byte-order mark (as Windows tools write) and a generated password in the product's
    // shape (no sourceField, no transform) load.
    let job = c.job(|j| {
        j["fieldsMap"][12]["transform"] = json!("");
        j["fieldsMap"][12]["sourceField"] = json!("");
        j["fieldsMap"][12]["options"] = json!("{\"passwordLength\":12,\"includeUppercaseAlphabets\":true,\"includeLowercaseAlphabets\":true,\"includeDigits\":true,\"passwordType\":1}");
    });
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(&job).unwrap());
    std::fs::write(&job, bytes).unwrap();
    let out = c.run(&["validate", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = c.run(&["run", job.to_str().unwrap(), "--password-out", "pw.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(c.path("pw.csv"))
            .unwrap()
            .lines()
            .count(),
        9
    );
}

#[test]
fn a_damaged_directory_file_is_refused_with_its_line() {
    let c = Case::new();
    let job = c.job(|_| {});
    let dup = "dn: OU=API,DC=groupid,DC=lab\nou: API\n\ndn: ou=api,dc=GROUPID,dc=lab\nou: API\n";
    let escape = "dn: OU=API,DC=groupid,DC=lab\nou: API\n\ndn: CN=Ann\\zz Lee,OU=API,DC=groupid,DC=lab\ncn: Ann\n";
    for (text_in, expected) in [(dup, "line 4"), (escape, "line 4")] {
        std::fs::write(c.path("directory.ldif"), text_in).unwrap();
        let out = c.run(&[
            "run",
            job.to_str().unwrap(),
            "--destination",
            "ldif:directory.ldif",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
        assert_eq!(
            std::fs::read_to_string(c.path("directory.ldif")).unwrap(),
            text_in
        );
    }
    // A default store that is some other file is refused and left as it was.
    std::fs::write(c.path("directory.db"), dup).unwrap();
    let out = c.run(&["run", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not a datasync store"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(c.path("directory.db")).unwrap(),
        dup
    );
    // A source that is not UTF-8 says where.
    std::fs::write(c.path("latin1.csv"), b"EmployeeID,First\n1,Jos\xe9\n").unwrap();
    let out = c.run(&[
        "run",
        job.to_str().unwrap(),
        "--source",
        "latin1.csv",
        "--destination",
        "ldif:l.ldif",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("line 2: column 6 (byte 0xE9)"),
        "{}",
        text(&out)
    );
}

#[test]
fn runaway_settings_are_bounded() {
    let c = Case::new();
    let job = c.job(|_| {});
    // More threads than make sense run the most a run uses.
    let out = c.run(&["run", job.to_str().unwrap(), "--threads", "100000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("it runs 64 workers"), "{}", text(&out));
    // Retries have a ceiling.
    let out = c.run(&["run", job.to_str().unwrap(), "--retries", "1000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_source_query_may_only_read_and_stops_on_ctrl_c() {
    let c = Case::new();
    let attach = c.job_named("attach.json", |j| {
        j["syncQuery"][0]["query"] = json!("ATTACH DATABASE 'created.db' AS x");
    });
    let out = c.run(&["run", attach.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("ATTACH"), "{}", text(&out));
    assert!(!c.path("created.db").exists(), "ATTACH created a file");

    // A query without end is stopped by Ctrl-C: the run ends Aborted and writes nothing.
    let endless = c.job_named("endless.json", |j| {
        support::users_only(j);
        j["syncQuery"][0]["query"] = json!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
             SELECT count(*) AS EmployeeID, 'A' AS First, 'B' AS Last, '' AS Email, \
             '' AS Department, '' AS Title, '' AS Phones, '' AS Manager FROM n"
        );
    });
    let child = Command::new(binary())
        .args([
            "run",
            endless.to_str().unwrap(),
            "--report",
            "endless.json.report",
        ])
        .current_dir(c.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = report(&c.path("endless.json.report"));
    assert_eq!(r["status"], "Aborted", "{r}");
    assert!(!c.path("directory.db").exists() || r["counts"]["added"] == 0);
}

/// The default store: a re-run changes no byte of it; `export` writes it as LDIF that
/// `import` (and `ldapadd`) take, and a store imported from that export exports the same.
#[test]
fn the_store_keeps_every_byte_on_an_unchanged_run_and_round_trips_through_ldif() {
    let c = Case::new();
    let job = c.job(|_| {});
    let job = job.to_str().unwrap();
    assert_eq!(c.run(&["run", job]).status.code(), Some(0));
    let store = std::fs::read(c.path("directory.db")).unwrap();
    let out = c.run(&["run", job, "--report", "r.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(report(&c.path("r.json"))["counts"]["unchanged"], 12);
    assert_eq!(
        std::fs::read(c.path("directory.db")).unwrap(),
        store,
        "an unchanged run wrote"
    );

    let out = c.run(&["export", "db:directory.db", "--ldif", "out.ldif"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let exported = std::fs::read_to_string(c.path("out.ldif")).unwrap();
    assert!(exported.starts_with("version: 1\n"), "{exported}");
    assert!(exported.contains("sAMAccountName: "), "{exported}");
    // An export never writes over the store it reads, named as it is or through a link.
    std::os::unix::fs::symlink("directory.db", c.path("link.ldif")).unwrap();
    for target in ["directory.db", "link.ldif"] {
        let out = c.run(&["export", "db:directory.db", "--ldif", target]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", text(&out));
        assert!(text(&out).contains("is the store itself"), "{}", text(&out));
        assert_eq!(std::fs::read(c.path("directory.db")).unwrap(), store);
    }
    let out = c.run(&["import", "out.ldif", "--into", "copy.db"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = c.run(&["export", "copy.db", "--ldif", "-"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), exported);

    // The same job into the LDIF directory gives the same entries, passwords aside.
    let out = c.run(&["run", job, "--destination", "ldif:same.ldif"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Salted hashes differ run to run: each userPassword line, and its folded rest, is left out.
    let without_passwords = |t: &str| {
        let mut kept = Vec::new();
        let mut in_password = false;
        for line in t.lines() {
            if line.starts_with("userPassword") {
                in_password = true;
            } else if !(in_password && line.starts_with(' ')) {
                in_password = false;
                kept.push(line);
            }
        }
        kept.join("\n")
    };
    assert_eq!(
        without_passwords(&std::fs::read_to_string(c.path("same.ldif")).unwrap()),
        without_passwords(&exported)
    );

    // An import that fails part-way adds nothing, and names the file and line.
    std::fs::write(
        c.path("bad.ldif"),
        "dn: OU=New,DC=groupid,DC=lab\nou: New\n\ndn: CN=x,OU=Missing,DC=groupid,DC=lab\ncn: x\n",
    )
    .unwrap();
    let out = c.run(&["import", "bad.ldif", "--into", "copy.db"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.ldif: line 4"), "{}", text(&out));
    let out = c.run(&["export", "copy.db", "--ldif", "-"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), exported);
    // Export never writes over its store.
    let out = c.run(&["export", "copy.db", "--ldif", "copy.db"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// A run killed while it writes (SIGKILL: no cleanup of any kind) leaves the store as the run
/// before left it, and the next run completes the change without duplicates.
#[test]
fn a_run_killed_while_it_writes_leaves_the_previous_store() {
    let c = Case::new();
    let staff = support::generated_people(30_000);
    std::fs::write(c.path("staff.csv"), support::people_csv(&staff)).unwrap();
    let job = c.job(|j| {
        support::users_only(j);
        support::set_setting(j, "Source.File", "staff.csv");
    });
    let job = job.to_str().unwrap();
    let out = c.run(&["run", job]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = c.directory().unwrap();

    let mut changed = staff.clone();
    for p in &mut changed {
        p.title = format!("{} (acting)", p.title);
    }
    std::fs::write(c.path("staff.csv"), support::people_csv(&changed)).unwrap();
    let mut child = Command::new(binary())
        .args(["run", job])
        .current_dir(c.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SQLite makes the rollback journal at the run's first write.
    let journal = c.path("directory.db-journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !journal.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was caught writing"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no write within two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        journal.exists(),
        "the killed run left no journal to roll back"
    );
    assert_eq!(
        c.directory().unwrap(),
        before,
        "a killed run's writes were kept"
    );

    let out = c.run(&["run", job, "--report", "r.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = report(&c.path("r.json"));
    assert_eq!(r["counts"]["updated"], 30_000, "{r}");
    assert_eq!(r["counts"]["added"], 0, "{r}");
    let after = c.directory().unwrap();
    assert_eq!(after.matches("(acting)").count(), 30_000);
}

/// The store a job filled is the source of another job (`--source db:PATH`), which copies its
/// users into an LDIF directory; the store named as both source and destination is refused
/// before anything is written.
#[test]
fn the_store_as_a_source_feeds_another_directory_and_never_itself() {
    let c = Case::new();
    let fill = c.job(support::users_only);
    let out = c.run(&["run", fill.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copy = c.job_named("copy.json", |job| {
        support::users_only(job);
        job["fieldsMap"] = json!([
            support::copy_field("cn", "cn", false),
            support::copy_field("sn", "sn", false),
            support::copy_field("employeeID", "employeeID", true),
        ]);
        job["syncQuery"][0]["query"] = json!("(&(objectClass=user)(employeeID=*))");
        job["syncQuery"][0]["queryType"] = json!("GroupID");
    });
    let copy = copy.to_str().unwrap();
    let out = c.run(&[
        "run",
        copy,
        "--source",
        "db:directory.db",
        "--destination",
        "ldif:copy.ldif",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copied = std::fs::read_to_string(c.path("copy.ldif")).unwrap();
    assert_eq!(
        copied.matches("employeeID: ").count(),
        support::people().len(),
        "{copied}"
    );
    assert!(!copied.contains("userPassword"), "{copied}");

    let before = std::fs::read(c.path("directory.db")).unwrap();
    let out = c.run(&[
        "run",
        copy,
        "--source",
        "db:directory.db",
        "--destination",
        "db:directory.db",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is the source: nothing was written"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(c.path("directory.db")).unwrap(), before);
}
