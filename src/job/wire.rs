//! The wire model: the GroupID `DataSyncJobs` JSON as serde structs, named as the JSON.
//!
//! These types are deliberately loose: they accept every job the product's API accepts and give
//! it back unchanged. Every field is a [`Maybe`], which remembers whether the JSON had the key,
//! had `null`, or had a value, and every struct keeps the keys it does not know in `extra`. So
//! `load → save` returns equal JSON for any job, not only the sample. Checking what the job
//! *means* is [`compile`](crate::plan::compile)'s work, not serde's.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON field that may be absent, `null`, or hold a value; each survives a round trip as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Maybe<T> {
    /// The key was not in the JSON.
    #[default]
    Absent,
    /// The key was there with `null`.
    Null,
    /// The key was there with a value.
    Value(T),
}

impl<T> Maybe<T> {
    /// The value, if there is one.
    pub fn get(&self) -> Option<&T> {
        match self {
            Maybe::Value(v) => Some(v),
            _ => None,
        }
    }

    /// True when the key was not in the JSON (such fields are not written back).
    pub fn is_absent(&self) -> bool {
        matches!(self, Maybe::Absent)
    }

    /// The value to edit in place, if there is one.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            Maybe::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value to edit, made first (from `make`) when the key was absent or `null`: how a
    /// host fills in a field a job did not have.
    ///
    /// ```
    /// use datasync::job::wire::Maybe;
    /// let mut field: Maybe<Vec<u32>> = Maybe::Null;
    /// field.get_or_insert_with(Vec::new).push(7);
    /// assert_eq!(field.get(), Some(&vec![7]));
    /// ```
    pub fn get_or_insert_with(&mut self, make: impl FnOnce() -> T) -> &mut T {
        if !matches!(self, Maybe::Value(_)) {
            *self = Maybe::Value(make());
        }
        match self {
            Maybe::Value(v) => v,
            // Set just above.
            _ => unreachable!("a Maybe set to a value holds one"),
        }
    }
}

impl<T: Copy> Maybe<T> {
    /// The value, or `default` when absent or `null`.
    pub fn or(&self, default: T) -> T {
        self.get().copied().unwrap_or(default)
    }
}

impl Maybe<String> {
    /// The text, or `""` when absent or `null`.
    pub fn text(&self) -> &str {
        self.get().map(String::as_str).unwrap_or("")
    }
}

impl<T> From<T> for Maybe<T> {
    fn from(value: T) -> Self {
        Maybe::Value(value)
    }
}

impl<T: Serialize> Serialize for Maybe<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Maybe::Value(v) => v.serialize(serializer),
            // `Absent` is skipped by `skip_serializing_if`; should it be reached, null is closest.
            Maybe::Absent | Maybe::Null => serializer.serialize_none(),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Maybe<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(v) => Maybe::Value(v),
            None => Maybe::Null,
        })
    }
}

/// One `DataSyncJobs` job, as `POST /api/DataSyncJobs` takes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSyncJob {
    /// Whether this job is a template for other jobs.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_template: Maybe<bool>,
    /// Name, providers, schedule and collection placement.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub job_info: Maybe<JobInfo>,
    /// Source field → destination attribute mappings, for every object type.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub fields_map: Maybe<Vec<FieldMap>>,
    /// One entry per object type the job synchronises.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub objects_option: Maybe<Vec<ObjectsOption>>,
    /// Source (`SQL`) and destination (`GroupID`) queries per object type.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub sync_query: Maybe<Vec<SyncQuery>>,
    /// Provider settings as key/value pairs (`Destination.Container`, `Source.File`, …).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub settings: Maybe<Vec<Setting>>,
    /// Delimited-text layout of the source, when it has one (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub delimiter_schema: Maybe<Value>,
    /// Source schema (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub source_schema: Maybe<Value>,
    /// Destination schema (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub destination_schema: Maybe<Value>,
    /// Whether the caller may edit the job.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub has_access: Maybe<bool>,
    /// Keys this model does not name, kept so that saving gives back what was loaded.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `jobInfo`: who the job is and where it sits in a collection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)] // the fields are the product's own names; see the reference page
pub struct JobInfo {
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub job_id: Maybe<i64>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub template_id: Maybe<Value>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub job_guid: Maybe<String>,
    /// The job's name; reports and errors carry it.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub name: Maybe<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Maybe::is_absent")]
    pub job_type: Maybe<i64>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub source_provider: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub destination_provider: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub last_run: Maybe<Value>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub last_out_come: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub last_out_come_display_text: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub next_run: Maybe<Value>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub times_run: Maybe<i64>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub modified: Maybe<Value>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub schedule: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub smartgroup_schedule: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub enabled: Maybe<bool>,
    /// `Abort` or `Continue`: what a collection does after this job fails.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub on_failure: Maybe<String>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub run_order: Maybe<i64>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_enable: Maybe<bool>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub action: Maybe<i64>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub collection_id: Maybe<Value>,
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub scheduled_task: Maybe<Value>,
    /// Keys this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `fieldsMap` entry: how a destination attribute gets its value.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldMap {
    /// The product's edit action marker (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub action: Maybe<i64>,
    /// The source column copied when `transform` is empty.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub source_field: Maybe<String>,
    /// The destination attribute (`password` is the object's password).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub destination_field: Maybe<String>,
    /// The product's id of this mapping (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub id: Maybe<i64>,
    /// Splits the value into a multi-valued attribute when not empty.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub delimiter: Maybe<String>,
    /// `Name:param=value;…`, or empty for a plain copy of `sourceField`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub transform: Maybe<String>,
    /// Set only when the object is created ("new only"); forced on for keys.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub for_create_only: Maybe<bool>,
    /// The object type (see `objectsOption`) this mapping belongs to.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object_type: Maybe<i64>,
    /// Part of the key that matches source rows to destination objects.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_key: Maybe<bool>,
    /// Password options, a JSON document inside a string, on `password` fields.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub options: Maybe<String>,
    /// Keys this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl FieldMap {
    /// The password `options`, read from the JSON document the product keeps in a string;
    /// `None` when there are none.
    ///
    /// ```
    /// use datasync::job::wire::{FieldMap, PasswordOptions};
    /// let mut password = FieldMap::default();
    /// password.set_password_options(&PasswordOptions {
    ///     password_length: Some(16),
    ///     password_type: Some(1),
    ///     ..Default::default()
    /// });
    /// let options = password.password_options().unwrap().unwrap();
    /// assert_eq!(options.password_length, Some(16));
    /// assert!(password.options.text().contains("\"passwordLength\":16"));
    /// ```
    pub fn password_options(&self) -> Result<Option<PasswordOptions>, serde_json::Error> {
        match self.options.get() {
            Some(text) if !text.trim().is_empty() => serde_json::from_str(text).map(Some),
            _ => Ok(None),
        }
    }

    /// Stores `options` as the JSON document in a string the product keeps.
    pub fn set_password_options(&mut self, options: &PasswordOptions) {
        // A struct of numbers, flags and strings, with string keys: it always serialises.
        if let Ok(text) = serde_json::to_string(options) {
            self.options = text.into();
        }
    }
}

impl std::fmt::Debug for FieldMap {
    // The `password` field's transform holds the static password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self
            .destination_field
            .text()
            .eq_ignore_ascii_case("password");
        f.debug_struct("FieldMap")
            .field("source_field", &self.source_field)
            .field("destination_field", &self.destination_field)
            .field(
                "transform",
                crate::secret::redacted_if(secret, &self.transform),
            )
            .field("id", &self.id)
            .field("delimiter", &self.delimiter)
            .field("for_create_only", &self.for_create_only)
            .field("object_type", &self.object_type)
            .field("is_key", &self.is_key)
            .field("options", &self.options)
            .field("action", &self.action)
            .field("extra", &self.extra)
            .finish()
    }
}

/// One `objectsOption` entry: what the job does for one object type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectsOption {
    /// 1 = User, 2 = Contact, 4 = Group; see [`ObjectType`](crate::ObjectType).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object_type: Maybe<i64>,
    /// The product's id (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub id: Maybe<i64>,
    /// The owning job's id (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub job_id: Maybe<i64>,
    /// Create objects that have no match.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_create: Maybe<bool>,
    /// The object type's display name.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub display_name: Maybe<String>,
    /// Delete (or deprovision) objects in scope that no source row matches.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_delete: Maybe<bool>,
    /// Whether this object type takes part in the run (`false` skips it).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_selected: Maybe<bool>,
    /// `"1"` this container, `"2"` the container named in a source field, `"3"` from a script.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub container_option: Maybe<String>,
    /// The container DN, source field or script name, per `containerOption`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub container_option_value: Maybe<String>,
    /// 0 = a missing container fails the row, 1 = missing containers are created.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub create_object_container_strategy: Maybe<i64>,
    /// Disable and move instead of deleting.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_deprovisioning: Maybe<bool>,
    /// Object-type settings (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object_type_settings: Maybe<Value>,
    /// The product's edit action marker (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub action: Maybe<i64>,
    /// Keys this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `syncQuery` entry: the source or the destination query of an object type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncQuery {
    /// The product's edit action marker (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub action: Maybe<i64>,
    /// The product's id (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub id: Maybe<i64>,
    /// Kept as given.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub query_for: Maybe<Value>,
    /// The object type this query belongs to.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object_type: Maybe<i64>,
    /// SQL for the source; a GroupID query or an LDAP filter for the destination.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub query: Maybe<String>,
    /// `SQL` or `GroupID`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub query_type: Maybe<String>,
    /// True for the source query.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub is_source: Maybe<bool>,
    /// The source column holding each row's last-change time (delta runs).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub time_stamp_field: Maybe<String>,
    /// `true`: every row; `false`: only rows changed since the last run.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub update_all: Maybe<bool>,
    /// Keys this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `settings` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    /// The product's edit action marker (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub action: Maybe<i64>,
    /// The product's id (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub id: Maybe<i64>,
    /// `Destination.Container`, `Source.File`, …
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub key: Maybe<String>,
    /// Always text in the product, whatever `dataType` says.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub value: Maybe<String>,
    /// The .NET type name of the value (kept as given).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub data_type: Maybe<String>,
    /// The object type this setting is for, or `null` for all.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object_type: Maybe<i64>,
    /// Keys this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The password `options` of a `password` field, a JSON document stored in a string.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)] // the product's own names; see `transform::PasswordPolicy`
pub struct PasswordOptions {
    #[serde(default)]
    pub password_length: Option<i64>,
    #[serde(default)]
    pub include_uppercase_alphabets: Option<bool>,
    #[serde(default)]
    pub include_lowercase_alphabets: Option<bool>,
    #[serde(default)]
    pub include_digits: Option<bool>,
    #[serde(default)]
    pub include_special_symbols: Option<bool>,
    #[serde(default)]
    pub special_symbols: Option<String>,
    #[serde(default)]
    pub exclude_similar_symbols: Option<bool>,
    #[serde(default)]
    pub manager_notification: Option<bool>,
    #[serde(default)]
    pub password_type: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
