//! Typed job parameters, in Oracle Identity Governance's shape: each has a `dataType`
//! (`String`, `Number`, `Boolean`, `ITResource`), may be `required`, carries `helpText` and a
//! default `value`. A run's values are checked before anything runs (OIG answers 400); the
//! checked values become `%NAME%` variables for `Static` and entries of the hook context.
//!
//! A job file declares them in a top-level `parameters` object, which the GroupID format does
//! not have and keeps as an unknown member, so the file still loads and round-trips:
//!
//! ```json
//! "parameters": {
//!   "Company": { "dataType": "String", "required": true, "helpText": "Written to company" },
//!   "Dry": { "dataType": "Boolean", "value": false }
//! }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A parameter's type (OIG `dataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ParameterType {
    /// Any text.
    #[default]
    String,
    /// A decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// The name of a connection the host has configured (OIG's IT resource): non-empty text
    /// on one line. The host's hooks look it up.
    ITResource,
}

/// One declared parameter (OIG `JobParameter`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobParameter {
    /// The type; `String` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<ParameterType>,
    /// What the parameter is for, for the people who fill it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    /// A run without a value is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// The default value (text, or a JSON number or boolean as in OIG's samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A job's declared parameters, by name.
pub type Parameters = BTreeMap<String, JobParameter>;

/// A parameter value that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job \"{job}\": parameter \"{parameter}\": {message}")]
pub struct ParameterError {
    /// The job.
    pub job: String,
    /// The parameter.
    pub parameter: String,
    /// Why.
    pub message: String,
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Checks `given` against `declared` and returns the values a run uses: each given value, else
/// the declared default, normalised (`Boolean` as `true`/`false`, `Number` trimmed). Every
/// mistake is returned. A job that declares nothing takes any values as untyped text.
///
/// ```
/// use std::collections::BTreeMap;
/// use datasync::lifecycle::{JobParameter, ParameterType, resolve_parameters};
///
/// let declared = BTreeMap::from([(
///     "Limit".to_string(),
///     JobParameter { data_type: Some(ParameterType::Number), required: Some(true), ..Default::default() },
/// )]);
/// let given = BTreeMap::from([("Limit".to_string(), "ten".to_string())]);
/// let errors = resolve_parameters("nightly", &declared, &given).unwrap_err();
/// assert_eq!(errors[0].to_string(), "job \"nightly\": parameter \"Limit\": \"ten\" is not a Number");
/// ```
pub fn resolve_parameters(
    job: &str,
    declared: &Parameters,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<ParameterError>> {
    let mut errors = Vec::new();
    let mut error = |parameter: &str, message: String| {
        errors.push(ParameterError {
            job: job.to_string(),
            parameter: parameter.to_string(),
            message,
        })
    };
    if declared.is_empty() {
        return Ok(given.clone());
    }
    for name in given.keys().filter(|n| !declared.contains_key(*n)) {
        let known: Vec<&str> = declared.keys().map(String::as_str).collect();
        error(
            name,
            format!(
                "the job has no such parameter (it has: {})",
                known.join(", ")
            ),
        );
    }
    let mut values = BTreeMap::new();
    for (name, spec) in declared {
        let value = given
            .get(name)
            .cloned()
            .or_else(|| spec.value.as_ref().and_then(text))
            .filter(|v| !v.trim().is_empty());
        let Some(value) = value else {
            if spec.required == Some(true) {
                let help = spec
                    .help_text
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                error(name, format!("a value is required{help}"));
            }
            continue;
        };
        let data_type = spec.data_type.unwrap_or_default();
        let checked = match data_type {
            ParameterType::String => Ok(value),
            ParameterType::Number => {
                let t = value.trim();
                match t.parse::<f64>() {
                    Ok(n) if n.is_finite() => Ok(t.to_string()),
                    _ => Err(format!("\"{value}\" is not a Number")),
                }
            }
            ParameterType::Boolean => match value.trim().to_ascii_lowercase().as_str() {
                "true" => Ok("true".to_string()),
                "false" => Ok("false".to_string()),
                _ => Err(format!("\"{value}\" is not a Boolean (true or false)")),
            },
            ParameterType::ITResource => {
                if value.chars().any(char::is_control) {
                    Err("an ITResource is the name of a configured connection, on one line".into())
                } else {
                    Ok(value.trim().to_string())
                }
            }
        };
        match checked {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(message) => error(name, message),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Parameters {
        serde_json::from_str(
            r#"{
                "Company": {"dataType": "String", "required": true, "helpText": "the company name"},
                "Limit": {"dataType": "Number", "value": 11},
                "Notify": {"dataType": "Boolean", "value": "False"},
                "Target": {"dataType": "ITResource"}
            }"#,
        )
        .unwrap()
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_fill_in_and_values_are_normalised() {
        let v = resolve_parameters("j", &declared(), &given(&[("Company", "Acme")])).unwrap();
        assert_eq!(
            v,
            given(&[("Company", "Acme"), ("Limit", "11"), ("Notify", "false")])
        );
        let v = resolve_parameters(
            "j",
            &declared(),
            &given(&[
                ("Company", "Acme"),
                ("Notify", "TRUE"),
                ("Target", "corp-ad"),
            ]),
        )
        .unwrap();
        assert_eq!(v["Notify"], "true");
        assert_eq!(v["Target"], "corp-ad");
    }

    #[test]
    fn every_mistake_is_reported() {
        let errors = resolve_parameters(
            "j",
            &declared(),
            &given(&[("Limit", "1e999"), ("Notify", "yes"), ("Colour", "red")]),
        )
        .unwrap_err();
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            messages,
            [
                "job \"j\": parameter \"Colour\": the job has no such parameter (it has: Company, Limit, Notify, Target)",
                "job \"j\": parameter \"Company\": a value is required (the company name)",
                "job \"j\": parameter \"Limit\": \"1e999\" is not a Number",
                "job \"j\": parameter \"Notify\": \"yes\" is not a Boolean (true or false)",
            ]
        );
    }

    #[test]
    fn the_oig_sample_shape_loads() {
        // The request body of OIG's POST /scheduler/jobs: values are numbers, no types.
        let p: Parameters = serde_json::from_str(
            r#"{"Cert Campaigns for Purge": {"value": 11}, "Purge Criteria": {"value": 1}}"#,
        )
        .unwrap();
        let v = resolve_parameters("Test Job", &p, &BTreeMap::new()).unwrap();
        assert_eq!(v["Cert Campaigns for Purge"], "11");
    }
}
