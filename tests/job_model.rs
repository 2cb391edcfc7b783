//! The job format: the reference sample loads unchanged and saves back equal, and every mistake
//! is a typed error that names where it is.

use datasync::job::{self, LoadError};
use datasync::plan::compile;
use datasync::transform::TransformContext;
use serde_json::{Value, json};

fn sample_text() -> String {
    std::fs::read_to_string("fixtures/jobs/groupid-sample.json").unwrap()
}

fn sample() -> Value {
    serde_json::from_str(&sample_text()).unwrap()
}

/// The errors of a job as `location: message` lines.
fn errors(job: &Value) -> Vec<String> {
    let wire = job::from_json(&job.to_string(), "test").unwrap();
    match compile(&wire, &TransformContext::default()) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn the_reference_sample_round_trips_to_equal_json() {
    let wire = job::from_json(&sample_text(), "sample").unwrap();
    let saved: Value = serde_json::from_str(&job::to_json(&wire)).unwrap();
    assert_eq!(saved, sample());
    // and in the same key order as the sample, at the top level
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&saved), keys(&sample()));
    assert!(compile(&wire, &TransformContext::default()).is_ok());
}

#[test]
fn unknown_fields_nulls_and_absent_fields_survive() {
    let mut job = sample();
    job["futureTopLevel"] = json!({"a": [1, 2.5, "x"]});
    job["jobInfo"]["futureField"] = json!(true);
    job["fieldsMap"][0]["futureField"] = json!(null);
    job["settings"][0]["futureField"] = json!("v");
    job["objectsOption"][0]["futureField"] = json!(7);
    job["syncQuery"][0]["futureField"] = json!([]);
    job["jobInfo"].as_object_mut().unwrap().remove("lastRun");
    job["fieldsMap"][1]
        .as_object_mut()
        .unwrap()
        .remove("options");
    job["delimiterSchema"] = json!({"delimiter": ";", "columns": ["a"]});
    let wire = job::from_json(&job.to_string(), "t").unwrap();
    let saved: Value = serde_json::from_str(&job::to_json(&wire)).unwrap();
    assert_eq!(saved, job);
    assert!(
        saved["jobInfo"].get("lastRun").is_none(),
        "absent stays absent"
    );
    assert!(saved["jobInfo"]["templateId"].is_null(), "null stays null");
}

#[test]
fn wrong_types_are_reported_with_their_json_path() {
    let mut job = sample();
    job["fieldsMap"][3]["isKey"] = json!("yes");
    let e = job::from_json(&job.to_string(), "job.json").unwrap_err();
    let LoadError::Json { location, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(location, "fieldsMap[3].isKey");
    assert!(
        e.to_string()
            .starts_with("job.json: fieldsMap[3].isKey: invalid type"),
        "{e}"
    );

    let e = job::from_json("{\"fieldsMap\": [", "job.json").unwrap_err();
    assert!(e.to_string().contains("EOF"), "{e}");
}

#[test]
fn compile_names_every_mistake() {
    let mut job = sample();
    job["fieldsMap"][3]["transform"] = json!("Foo:x=1");
    job["fieldsMap"][2]["isKey"] = json!(false);
    job["syncQuery"].as_array_mut().unwrap().remove(0);
    job["syncQuery"][0]["query"] = json!("objectClass is exactish \"user\"");
    job["fieldsMap"][4]["options"] =
        json!("{\"passwordType\":1,\"passwordLength\":3,\"includeDigits\":true}");
    let found = errors(&job);
    for expected in [
        "fieldsMap[3].transform: unknown transform \"Foo\"",
        "fieldsMap: no key field for object type 1",
        "syncQuery: no source query for object type 1",
        "fieldsMap[4].options: passwordLength 3 is outside 6 to 99",
    ] {
        assert!(
            found.iter().any(|f| f == expected),
            "missing {expected:?} in {found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("syncQuery[0].query: expected an operator")),
        "{found:#?}"
    );
}

#[test]
fn settings_and_options_are_checked() {
    let mut job = sample();
    let settings = job["settings"].as_array_mut().unwrap();
    settings
        .push(json!({"key": "Destination.DeleteThreshold", "value": "lots", "objectType": null}));
    settings.push(
        json!({"key": "Destination.DeprovisionContainer", "value": "not a dn", "objectType": null}),
    );
    job["objectsOption"][0]["containerOption"] = json!("9");
    job["fieldsMap"][0]["objectType"] = json!(7);
    job["fieldsMap"][1]["destinationField"] = json!("distinguishedName");
    let found = errors(&job).join("\n");
    for needle in [
        "settings[Destination.DeleteThreshold]: \"lots\" is not a count or a percentage",
        "settings[Destination.DeprovisionContainer]: invalid DN",
        "objectsOption[0].containerOption: \"9\" is not 1",
        "fieldsMap[0].objectType: object type 7 has no objectsOption entry",
        "no cn field for object type 1",
        "fieldsMap[1].destinationField: distinguishedName cannot be set",
    ] {
        assert!(found.contains(needle), "missing {needle:?} in\n{found}");
    }
}

#[test]
fn a_resolve_key_is_refused() {
    let mut job = sample();
    job["fieldsMap"][2]["transform"] = json!("Resolve:field=Manager;attribute=employeeID");
    let found = errors(&job).join("\n");
    assert!(
        found.contains("fieldsMap[2].isKey: a Resolve field cannot be a key"),
        "{found}"
    );
}

#[test]
fn a_container_outside_the_scope_is_refused() {
    let mut job = sample();
    job["objectsOption"][0]["containerOptionValue"] = json!("OU=Elsewhere,DC=groupid,DC=lab");
    let found = errors(&job).join("\n");
    assert!(
        found.contains("would not be found by the next run"),
        "{found}"
    );
}

#[test]
fn every_object_type_gets_its_own_plan() {
    let wire = job::load("fixtures/jobs/excel-to-ad.json".as_ref()).unwrap();
    let plan = compile(&wire, &TransformContext::default()).unwrap();
    let types: Vec<i64> = plan.objects.iter().map(|o| o.object_type.code()).collect();
    assert_eq!(types, [1, 4]);
    assert_eq!(
        plan.objects[1].destination_filter.to_string(),
        "(objectClass=group)"
    );
    assert_eq!(
        plan.objects[1].source_query,
        "SELECT * FROM [Groups$] ORDER BY Name"
    );
    assert_eq!(plan.source_file.as_deref(), Some("../sources/people.xlsx"));
    // the sample's password is a Static transform; it must not show in Debug output
    for debug in [
        format!("{plan:?}"),
        format!("{wire:?}"),
        format!("{:#?}", plan.objects[0].fields),
    ] {
        assert!(!debug.contains("webdir123R"), "{debug}");
    }
    assert!(
        format!("{plan:?}").contains("Join"),
        "the rest is still printed"
    );
}
