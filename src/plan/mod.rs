//! The plan: a job checked and compiled ([`compile`]) into what the engine runs, each object
//! type's fields bound to their transforms, its keys, containers, scope and settings.
//!
//! Compiling never stops at the first mistake: [`compile`] returns every problem it finds, each
//! named by where it is in the JSON (`fieldsMap[3].transform: unknown transform "Foo"`).

mod compile;

use std::fmt;

pub use compile::compile;

use crate::destination::TableSpec;
use crate::job::ObjectType;
use crate::query::Filter;
use crate::transform::{PasswordRule, Script, Transform};

/// How a type's new objects are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Naming {
    /// `CN=<cn>` in their container: a directory's objects.
    Cn,
    /// By their key fields' values (`employeeID=1001`), under the table's
    /// [`TABLE_DN`](crate::destination::TABLE_DN): a table's rows, which have no DN of their
    /// own, so that a row read back is found under the name it was written with.
    Keys,
}

/// Where new objects of a type are created (`containerOption`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ContainerRule {
    /// `"1"`: this container DN.
    Fixed(String),
    /// `"2"`: the container DN is in this source field.
    FromField(String),
    /// `"3"`: a host script (registered like `Script` transforms) returns the container DN.
    FromScript(Script),
}

/// When deletes are withheld (`Destination.DeleteThreshold`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum DeleteThreshold {
    /// More than this many deletes in one run are withheld.
    Count(usize),
    /// More than this percentage of the objects in scope are withheld.
    Percent(f64),
}

/// One compiled field mapping.
#[derive(Clone)]
pub struct FieldPlan {
    /// Its position in `fieldsMap` (for messages).
    pub map_index: usize,
    /// The destination attribute (`password` for the password).
    pub attribute: crate::destination::AttributeName,
    /// How the value is made.
    pub transform: Transform,
    /// Part of the matching key.
    pub is_key: bool,
    /// Written only when the object is created (forced on for keys).
    pub create_only: bool,
    /// Splits the value into several values.
    pub delimiter: Option<String>,
    /// Set for the `password` field.
    pub password: Option<PasswordRule>,
}

impl fmt::Debug for FieldPlan {
    // The password field's transform holds the static password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldPlan")
            .field("map_index", &self.map_index)
            .field("attribute", &self.attribute)
            .field(
                "transform",
                crate::secret::redacted_if(self.password.is_some(), &self.transform),
            )
            .field("is_key", &self.is_key)
            .field("create_only", &self.create_only)
            .field("delimiter", &self.delimiter)
            .field("password", &self.password)
            .finish()
    }
}

/// True when `attribute` is `memberOf`: the groups an object is a member of, which the
/// directory computes and a run writes to the groups instead (see
/// [`FieldPlan::is_member_of`]).
pub(crate) fn names_member_of(attribute: &str) -> bool {
    attribute.eq_ignore_ascii_case("memberOf")
}

impl FieldPlan {
    /// `fieldsMap[i] (attr)`, for messages.
    pub fn location(&self) -> String {
        format!("fieldsMap[{}] ({})", self.map_index, self.attribute)
    }

    /// True for a user row's `memberOf` field: the groups it names (a `Resolve` to the
    /// groups' key attribute) get the row's object as a `member`, and the in-scope groups it no
    /// longer names lose it. `memberOf` itself is never written: the directory computes it.
    pub fn is_member_of(&self) -> bool {
        names_member_of(&self.attribute)
    }

    /// True for a `Resolve` field with a delimiter (a group's `member`): each delimited value
    /// resolves on its own, one that resolves to no object or to several is left out with a
    /// warning, and the DNs are a set, changed value by value (added and removed) rather than
    /// replaced whole.
    pub fn is_dn_set(&self) -> bool {
        self.delimiter.is_some()
            && matches!(self.transform, Transform::Resolve { .. })
            && !self.is_member_of()
    }
}

/// Everything the engine needs for one object type.
#[derive(Debug, Clone)]
pub struct ObjectPlan {
    /// The type.
    pub object_type: ObjectType,
    /// Its display name.
    pub display_name: String,
    /// Create objects without a match.
    pub create: bool,
    /// Remove objects in scope without a source row.
    pub delete: bool,
    /// Remove by disabling and moving rather than deleting.
    pub deprovision: bool,
    /// Where new objects go.
    pub container: ContainerRule,
    /// Create missing containers (`createObjectContainerStrategy` 1) or fail the row (0).
    pub create_containers: bool,
    /// The base of the destination scan (and of the delete scope).
    pub scope_base: String,
    /// Subtree (`Destination.ShouldIncludeSubTree`) or one level.
    pub subtree: bool,
    /// The source SQL.
    pub source_query: String,
    /// The destination query as written (a hook may rewrite it).
    pub destination_query: String,
    /// The destination query compiled.
    pub destination_filter: Filter,
    /// The mappings of this type.
    pub fields: Vec<FieldPlan>,
    /// Positions in `fields` of the key fields, in map order.
    pub key_fields: Vec<usize>,
    /// Position in `fields` of the `cn` mapping, which names new objects.
    pub rdn_field: Option<usize>,
    /// How new objects are named: by `cn`, or, for a table destination, by their keys.
    pub naming: Naming,
    /// The delete limit.
    pub delete_threshold: DeleteThreshold,
    /// Where deprovisioned objects are moved (`Destination.DeprovisionContainer`).
    pub deprovision_container: Option<String>,
    /// The source column with each row's change time (delta runs).
    pub time_stamp_field: Option<String>,
    /// Every row (`true`) or only changed rows.
    pub update_all: bool,
}

/// A validated job, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `jobInfo.name`.
    pub name: String,
    /// The object types to run, in `objectsOption` order.
    pub objects: Vec<ObjectPlan>,
    /// `Source.File`, if the job names its source file.
    pub source_file: Option<String>,
    /// `Destination.ProviderName` (`Active Directory`, …).
    pub destination_provider: Option<String>,
    /// For a job whose destination is a table (`Destination.IsTableProvider` true): the
    /// table's name (`Destination.Table`; `Sheet1` when the job names none). Its rows are
    /// named by their keys, it has no containers or object classes, and it never holds a
    /// password.
    pub table: Option<String>,
}

impl Plan {
    /// The columns of a table job's (first) object type: each column's name and delimiter,
    /// and the key columns (see [`TableSpec`]).
    pub fn table_spec(&self) -> TableSpec {
        let Some(op) = self.objects.first() else {
            return TableSpec::default();
        };
        TableSpec {
            columns: op
                .fields
                .iter()
                .filter(|f| f.password.is_none())
                .map(|f| (f.attribute.to_string(), f.delimiter.clone()))
                .collect(),
            keys: op
                .key_fields
                .iter()
                .map(|&i| op.fields[i].attribute.to_string())
                .collect(),
        }
    }
}
