//! The job as its file says it: the wire model ([`wire`], the JSON as the product writes it),
//! loading and saving it, and reading its settings. [`plan::compile`](crate::plan::compile)
//! checks a job and turns it into the plan the engine runs.

pub mod wire;

use std::fmt;
use std::path::{Path, PathBuf};

pub use wire::DataSyncJob;

/// A job file that could not be read or is not the job JSON.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read job file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON is malformed or a field has the wrong type; `location` is its JSON path.
    #[error("{file}: {location}: {message}")]
    Json {
        /// The file (or `<text>`).
        file: String,
        /// The JSON path, e.g. `fieldsMap[3].isKey`.
        location: String,
        /// What serde said.
        message: String,
    },
}

/// Reads a `DataSyncJobs` JSON text.
pub fn from_json(text: &str, file: &str) -> Result<DataSyncJob, LoadError> {
    // Windows tools (Notepad, PowerShell's Out-File) start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let location = e.path().to_string();
        LoadError::Json {
            file: file.to_string(),
            location: if location == "." {
                "(top)".into()
            } else {
                location
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// Reads a job file.
pub fn load(path: &Path) -> Result<DataSyncJob, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_json(&text, &path.display().to_string())
}

/// Writes a job back as pretty JSON: every field it was loaded with, unchanged.
pub fn to_json(job: &DataSyncJob) -> String {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string_pretty(job).unwrap_or_default()
}

/// One mistake in a job, named by where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// Where in the JSON: `fieldsMap[3].transform`, `syncQuery`, `settings[Destination.Container]`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every mistake found in a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JobErrors(pub Vec<JobError>);

impl fmt::Display for JobErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// What kind of object an `objectsOption` entry synchronises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectType {
    /// 1: a user.
    User,
    /// 4: a group.
    Group,
    /// Any other number: its object classes must come from an `objectClass` mapping.
    Other(i64),
}

impl ObjectType {
    /// From the product's number.
    pub fn from_code(code: i64) -> ObjectType {
        match code {
            1 => ObjectType::User,
            4 => ObjectType::Group,
            n => ObjectType::Other(n),
        }
    }

    /// The product's number.
    pub fn code(self) -> i64 {
        match self {
            ObjectType::User => 1,
            ObjectType::Group => 4,
            ObjectType::Other(n) => n,
        }
    }

    /// The object classes a new object gets when the field map sets none (AD's classes).
    pub fn default_object_classes(self) -> Option<&'static [&'static str]> {
        match self {
            ObjectType::User => Some(&["top", "person", "organizationalPerson", "user"]),
            ObjectType::Group => Some(&["top", "group"]),
            ObjectType::Other(_) => None,
        }
    }

    /// The destination query used when the job gives none.
    pub(crate) fn default_query(self) -> Option<&'static str> {
        match self {
            ObjectType::User => Some("(objectClass=user)"),
            ObjectType::Group => Some("(objectClass=group)"),
            ObjectType::Other(_) => None,
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// The job's name, or `DataSyncJob` when it has none.
pub fn job_name(job: &DataSyncJob) -> String {
    job.job_info
        .get()
        .map(|i| i.name.text().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "DataSyncJob".into())
}

/// The job-wide value of a `settings` key (case-insensitive; not an object type's own),
/// trimmed; `None` when absent or blank.
///
/// ```
/// let job = datasync::job::load("fixtures/jobs/excel-to-ad.json".as_ref()).unwrap();
/// assert_eq!(datasync::job::setting(&job, "destination.providername"), Some("Active Directory"));
/// ```
pub fn setting<'a>(job: &'a DataSyncJob, key: &str) -> Option<&'a str> {
    job.settings
        .get()?
        .iter()
        .filter(|s| s.object_type.get().is_none())
        .find(|s| s.key.text().eq_ignore_ascii_case(key))
        .map(|s| s.value.text().trim())
        .filter(|v| !v.is_empty())
}

/// The source file a job names in its `Source.File` setting, relative to the folder of the
/// job file at `job_file` (as the product stores it beside the job): what a host opens when
/// it is given no other source.
///
/// ```
/// let json = std::fs::read_to_string("fixtures/jobs/excel-to-ad.json").unwrap();
/// let job = datasync::job::from_json(&json, "main").unwrap();
/// let path = datasync::job::source_path(&job, "fixtures/jobs/excel-to-ad.json".as_ref());
/// assert!(path.unwrap().ends_with("people.xlsx"));
/// ```
pub fn source_path(job: &DataSyncJob, job_file: &std::path::Path) -> Option<std::path::PathBuf> {
    setting(job, "Source.File").map(|file| {
        job_file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(file)
    })
}

/// Sets a job-wide setting (`objectType` null), replacing the one with the same key (in any
/// case), as the product's editor does. How a host points a job at a table destination:
///
/// ```
/// let json = std::fs::read_to_string("fixtures/jobs/groupid-sample.json").unwrap();
/// let mut job = datasync::job::from_json(&json, "sample").unwrap();
/// datasync::job::set_setting(&mut job, "Destination.IsTableProvider", "True");
/// assert_eq!(datasync::job::setting(&job, "destination.istableprovider"), Some("True"));
/// ```
pub fn set_setting(job: &mut DataSyncJob, key: &str, value: &str) {
    let settings = match &mut job.settings {
        wire::Maybe::Value(settings) => settings,
        other => {
            *other = wire::Maybe::Value(Vec::new());
            match other {
                wire::Maybe::Value(settings) => settings,
                _ => return,
            }
        }
    };
    let same =
        |s: &wire::Setting| s.key.text().eq_ignore_ascii_case(key) && s.object_type.get().is_none();
    match settings.iter_mut().find(|s| same(s)) {
        Some(existing) => existing.value = value.to_string().into(),
        None => settings.push(wire::Setting {
            action: 0.into(),
            id: 0.into(),
            key: key.to_string().into(),
            value: value.to_string().into(),
            data_type: "System.String".to_string().into(),
            object_type: wire::Maybe::Null,
            extra: Default::default(),
        }),
    }
}

/// A setting's boolean: `True`/`False` as the product writes them, `1`/`0`, `yes`/`no`, in
/// any case. The lifecycle reads its settings with the same.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}
