//! The command line, as a user drives it: exit codes, reports, and bad input that writes nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// The `datasync` example binary, built beside the test binaries.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("datasync");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "datasync"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
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
        let ldif = self.path("directory.ldif");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::fs::read_to_string(&ldif).is_ok_and(|t| done(&t)) {
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
        Command::new(binary())
            .args(args)
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
    assert!(c.path("directory.ldif").exists(), "the default destination");
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
    let ldif = c.path("directory.ldif");
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
    let ldif = std::fs::read_to_string(c.path("directory.ldif")).unwrap();
    let report = std::fs::read_to_string(c.path("r.json")).unwrap();
    for row in &rows {
        let password = &row[1];
        assert_eq!(password.len(), 10);
        assert!(!ldif.contains(password), "plain password in the directory");
        assert!(!report.contains(password), "password in the report");
        assert!(!text(&out).contains(password), "password on the terminal");
    }
    // only passwords set in this run: a second run sets none
    let out = c.run(&["run", job.to_str().unwrap(), "--password-out", "pw.csv"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "dn,password\n");
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
    assert!(!c.path("directory.ldif").exists());
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
    assert!(!c.path("directory.ldif").exists(), "a refused run wrote");
    let out = c.run(&["run", job.to_str().unwrap(), "--var", "Company=Acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ldif = std::fs::read_to_string(c.path("directory.ldif")).unwrap();
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
    assert_eq!(t.matches("retrying in 0 s").count(), 1, "{t}");
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
