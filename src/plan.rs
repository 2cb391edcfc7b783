//! The plan: a job checked and compiled ([`compile`]) into what the engine runs, each object
//! type's fields bound to their transforms, its keys, containers, scope and settings.
//!
//! Compiling never stops at the first mistake: [`compile`] returns every problem it finds, each
//! named by where it is in the JSON (`fieldsMap[3].transform: unknown transform "Foo"`).

use std::fmt;

use crate::destination::TableSpec;
use crate::dn::Dn;
use crate::job::wire::{self, DataSyncJob};
use crate::job::{JobError, JobErrors, ObjectType, job_name, parse_bool};
use crate::query::{Filter, parse_destination_query};
use crate::transform::{PasswordRule, Script, Transform, TransformContext};

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

struct Settings<'a>(&'a [wire::Setting]);

impl Settings<'_> {
    /// A setting for this object type, else the general one.
    fn get(&self, key: &str, object_type: Option<i64>) -> Option<&str> {
        let matching = |s: &&wire::Setting| s.key.text().eq_ignore_ascii_case(key);
        let specific = object_type.and_then(|t| {
            self.0
                .iter()
                .filter(matching)
                .find(|s| s.object_type.get() == Some(&t))
        });
        specific
            .or_else(|| {
                self.0
                    .iter()
                    .filter(matching)
                    .find(|s| s.object_type.get().is_none())
            })
            .map(|s| s.value.text().trim())
            .filter(|v| !v.is_empty())
    }
}

/// `Destination.DeleteThreshold`: a count (`500`, the default) or a percentage (`10%`).
fn delete_threshold(value: Option<&str>, err: &mut impl FnMut(String, String)) -> DeleteThreshold {
    let Some(v) = value else {
        return DeleteThreshold::Count(500);
    };
    match v.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => DeleteThreshold::Percent(p),
            _ => {
                err(
                    "settings[Destination.DeleteThreshold]".into(),
                    format!("\"{v}\" is not a percentage from 0% to 100%"),
                );
                DeleteThreshold::Count(500)
            }
        },
        None => match v.parse::<usize>() {
            Ok(n) => DeleteThreshold::Count(n),
            Err(_) => {
                err(
                    "settings[Destination.DeleteThreshold]".into(),
                    format!("\"{v}\" is not a count or a percentage"),
                );
                DeleteThreshold::Count(500)
            }
        },
    }
}

/// Checks a job and compiles it into a [`Plan`]; all mistakes are returned together.
///
/// ```
/// let json = std::fs::read_to_string("fixtures/jobs/groupid-sample.json").unwrap();
/// let job = datasync::job::from_json(&json, "sample").unwrap();
/// let plan = datasync::plan::compile(&job, &Default::default()).unwrap();
/// assert_eq!(plan.objects[0].destination_filter.to_string(), "(objectClass=user)");
/// ```
pub fn compile(job: &DataSyncJob, context: &TransformContext) -> Result<Plan, JobErrors> {
    let mut errors = Vec::new();
    let mut err = |location: String, message: String| errors.push(JobError { location, message });
    let empty = Vec::new();
    let fields_map = job.fields_map.get().unwrap_or(&empty);
    let objects_option = job.objects_option.get().unwrap_or(&Vec::new()).clone();
    let sync_query = job.sync_query.get().cloned().unwrap_or_default();
    let settings_list = job.settings.get().cloned().unwrap_or_default();
    let settings = Settings(&settings_list);
    let table = match settings.get("Destination.IsTableProvider", None) {
        None => None,
        Some(v) => match parse_bool(v) {
            Some(true) => Some(
                settings
                    .get("Destination.Table", None)
                    .unwrap_or("Sheet1")
                    .to_string(),
            ),
            Some(false) => None,
            None => {
                err(
                    "settings[Destination.IsTableProvider]".into(),
                    format!("\"{v}\" is not True or False"),
                );
                None
            }
        },
    };

    if objects_option.is_empty() {
        err(
            "objectsOption".into(),
            "no object type to synchronise".into(),
        );
    }
    let mut objects = Vec::new();
    for (oi, option) in objects_option.iter().enumerate() {
        let here = |field: &str| format!("objectsOption[{oi}].{field}");
        if option.is_selected.get() == Some(&false) {
            continue;
        }
        let Some(&code) = option.object_type.get() else {
            err(here("objectType"), "missing".into());
            continue;
        };
        let object_type = ObjectType::from_code(code);
        if objects
            .iter()
            .any(|o: &ObjectPlan| o.object_type == object_type)
        {
            err(
                here("objectType"),
                format!("object type {code} appears twice"),
            );
            continue;
        }

        // The field map of this type.
        let mut fields: Vec<FieldPlan> = Vec::new();
        for (fi, f) in fields_map.iter().enumerate() {
            if f.object_type.get().copied().unwrap_or(1) != code {
                continue;
            }
            let at = |field: &str| format!("fieldsMap[{fi}].{field}");
            let attribute = f.destination_field.text().trim().to_string();
            if attribute.is_empty() {
                err(at("destinationField"), "empty".into());
                continue;
            }
            if let Err(why) = crate::destination::check_attribute_description(&attribute) {
                err(at("destinationField"), why);
                continue;
            }
            if [
                "objectGUID",
                "objectSid",
                "whenCreated",
                "whenChanged",
                "uSNCreated",
                "uSNChanged",
            ]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&attribute))
            {
                err(
                    at("destinationField"),
                    format!("{attribute} is set by the directory itself; a job cannot map it"),
                );
                continue;
            }
            if ["dn", "distinguishedName", "changetype"]
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&attribute))
            {
                err(
                    at("destinationField"),
                    format!(
                        "{attribute} cannot be set: an object's DN is made from its cn and container"
                    ),
                );
                continue;
            }
            if fields
                .iter()
                .any(|p| p.attribute.eq_ignore_ascii_case(&attribute))
            {
                err(
                    at("destinationField"),
                    format!("{attribute} is mapped twice for object type {code}"),
                );
                continue;
            }
            let source_field = f
                .source_field
                .get()
                .map(String::as_str)
                .filter(|s| !s.trim().is_empty());
            // Any password attribute, however it is spelt in the field map, is the password:
            // the destination stores it in its own form (a hash, unicodePwd), never as text.
            let password = if crate::destination::is_password_attribute(&attribute) {
                match PasswordRule::from_options(f.options.get().map(String::as_str)) {
                    Ok(rule) => Some(rule),
                    Err(e) => {
                        err(at("options"), e);
                        continue;
                    }
                }
            } else {
                None
            };
            if password.is_some() && table.is_some() {
                err(
                    at("destinationField"),
                    format!(
                        "{attribute}: a table never holds passwords (it would keep them as plain text); remove this mapping for a table destination"
                    ),
                );
                continue;
            }
            if password.is_some() && fields.iter().any(|p| p.password.is_some()) {
                err(
                    at("destinationField"),
                    format!("the password is mapped twice for object type {code}"),
                );
                continue;
            }
            // A generated password needs no source field and no transform (the product writes
            // both empty for it).
            let generated_without_input = matches!(password, Some(PasswordRule::Generate(_)))
                && source_field.is_none()
                && f.transform.text().trim().is_empty();
            let parsed = if generated_without_input {
                Ok(Transform::Static(Vec::new()))
            } else {
                Transform::parse(f.transform.text(), source_field, context)
            };
            let transform = match parsed {
                Ok(t) => t,
                Err(e) => {
                    let which = if f.transform.text().trim().is_empty() {
                        "sourceField"
                    } else {
                        "transform"
                    };
                    err(at(which), e.to_string());
                    continue;
                }
            };
            let is_key = f.is_key.or(false);
            if is_key && matches!(transform, Transform::Resolve { .. }) {
                err(
                    at("isKey"),
                    "a Resolve field cannot be a key (its value is only known after matching)"
                        .into(),
                );
                continue;
            }
            if is_key && password.is_some() {
                err(at("isKey"), "the password cannot be a key".into());
                continue;
            }
            let delimiter = f.delimiter.get().filter(|d| !d.is_empty()).cloned();
            if is_key && delimiter.is_some() {
                err(at("delimiter"), "a key field cannot be multi-valued".into());
                continue;
            }
            if names_member_of(&attribute) && !matches!(transform, Transform::Resolve { .. }) {
                err(
                    at("transform"),
                    "memberOf is computed by the directory from the groups' members: map it with a Resolve to the groups' key attribute (Resolve:field=Groups;attribute=cn) and a delimiter, and the groups get the object as a member".into(),
                );
                continue;
            }
            fields.push(FieldPlan {
                map_index: fi,
                attribute: attribute.into(),
                transform,
                is_key,
                // The product forces "new only" on for keys: a key never changes.
                create_only: f.for_create_only.or(false) || is_key,
                delimiter,
                password,
            });
        }
        let key_fields: Vec<usize> = (0..fields.len()).filter(|i| fields[*i].is_key).collect();
        if key_fields.is_empty() {
            err(
                "fieldsMap".into(),
                format!("no key field for object type {code}"),
            );
        }
        // A table's rows are named by their keys; a directory's objects by their cn.
        let rdn_field = fields
            .iter()
            .position(|f| f.attribute.eq_ignore_ascii_case("cn"))
            .filter(|_| table.is_none());
        let create = option.is_create.or(false);
        if create && rdn_field.is_none() && table.is_none() {
            err(
                "fieldsMap".into(),
                format!("no cn field for object type {code} (new objects are named CN=<cn>)"),
            );
        }
        if create
            && table.is_none()
            && object_type.default_object_classes().is_none()
            && !fields
                .iter()
                .any(|f| f.attribute.eq_ignore_ascii_case("objectClass"))
        {
            err(
                "fieldsMap".into(),
                format!("object type {code} has no built-in object classes: map objectClass"),
            );
        }

        // Queries.
        let queries_of = |source: bool| {
            sync_query
                .iter()
                .enumerate()
                .filter(move |(_, q)| {
                    q.object_type.get().copied().unwrap_or(1) == code
                        && q.is_source
                            .or(q.query_type.text().eq_ignore_ascii_case("SQL"))
                            == source
                })
                .collect::<Vec<_>>()
        };
        let source_queries = queries_of(true);
        let source_query = match source_queries.first() {
            Some((_, q)) if !q.query.text().trim().is_empty() => q.query.text().to_string(),
            Some((qi, _)) => {
                err(
                    format!("syncQuery[{qi}].query"),
                    "empty source query".into(),
                );
                String::new()
            }
            None => {
                err(
                    "syncQuery".into(),
                    format!("no source query for object type {code}"),
                );
                String::new()
            }
        };
        let (time_stamp_field, update_all) = source_queries
            .first()
            .map(|(_, q)| {
                (
                    q.time_stamp_field
                        .get()
                        .filter(|t| !t.trim().is_empty())
                        .cloned(),
                    q.update_all.or(true),
                )
            })
            .unwrap_or((None, true));
        let destination = queries_of(false);
        let (destination_query, query_location) = match destination.first() {
            Some((qi, q)) if !q.query.text().trim().is_empty() => {
                (q.query.text().to_string(), format!("syncQuery[{qi}].query"))
            }
            _ => match object_type.default_query() {
                Some(q) => (q.to_string(), "syncQuery".to_string()),
                None => {
                    err(
                        "syncQuery".into(),
                        format!("no destination query for object type {code}"),
                    );
                    (String::new(), String::new())
                }
            },
        };
        let destination_filter = if destination_query.is_empty() {
            Filter::And(vec![])
        } else {
            match parse_destination_query(&destination_query) {
                Ok(f) => f,
                Err(e) => {
                    err(query_location, e.to_string());
                    Filter::And(vec![])
                }
            }
        };

        let setting = |key: &str| settings.get(key, Some(code));
        let delete_threshold = delete_threshold(setting("Destination.DeleteThreshold"), &mut err);
        if table.is_some() {
            // A table: every row in scope (the destination query is for a directory's
            // classes, which rows do not have), no containers.
            objects.push(ObjectPlan {
                object_type,
                display_name: option.display_name.text().to_string(),
                create,
                delete: option.is_delete.or(false),
                deprovision: false,
                container: ContainerRule::Fixed(crate::destination::TABLE_DN.into()),
                create_containers: false,
                scope_base: crate::destination::TABLE_DN.into(),
                subtree: false,
                source_query,
                destination_query: String::new(),
                destination_filter: Filter::And(vec![]),
                fields,
                key_fields,
                rdn_field: None,
                naming: Naming::Keys,
                delete_threshold,
                deprovision_container: None,
                time_stamp_field,
                update_all,
            });
            continue;
        }

        // Containers and scope.
        let valid_dn = |dn: &str| Dn::parse(dn).map(|_| ()).map_err(|e| e.to_string());
        let value = option.container_option_value.text().trim().to_string();
        // `false` once the container rule itself is wrong: the checks that build on it would
        // only add errors that follow from that one.
        let mut container_known = true;
        let container = match option.container_option.text().trim() {
            "" | "1" => {
                let dn = if value.is_empty() {
                    setting("Destination.Container").unwrap_or("").to_string()
                } else {
                    value.clone()
                };
                if dn.is_empty() {
                    err(
                        here("containerOptionValue"),
                        "no container (and no Destination.Container setting)".into(),
                    );
                } else if let Err(e) = valid_dn(&dn) {
                    err(here("containerOptionValue"), e);
                }
                ContainerRule::Fixed(dn)
            }
            "2" => {
                if value.is_empty() {
                    err(
                        here("containerOptionValue"),
                        "name the source field that holds the container".into(),
                    );
                }
                ContainerRule::FromField(value.clone())
            }
            "3" => match context.scripts.script(&value) {
                Some(script) => ContainerRule::FromScript(script),
                None => {
                    err(
                        here("containerOptionValue"),
                        format!("container script \"{value}\" is not registered by the host"),
                    );
                    container_known = false;
                    ContainerRule::Fixed(String::new())
                }
            },
            other => {
                err(
                    here("containerOption"),
                    format!(
                        "\"{other}\" is not 1 (this container), 2 (from a source field) or 3 (from a script)"
                    ),
                );
                container_known = false;
                ContainerRule::Fixed(String::new())
            }
        };
        let scope_base = match (setting("Destination.Container"), &container) {
            (Some(dn), _) => {
                if let Err(e) = valid_dn(dn) {
                    err("settings[Destination.Container]".into(), e);
                }
                dn.to_string()
            }
            (None, ContainerRule::Fixed(dn)) => dn.clone(),
            (None, _) if !container_known => String::new(),
            (None, _) => {
                err(
                    "settings[Destination.Container]".into(),
                    format!("needed to find existing objects of type {code}"),
                );
                String::new()
            }
        };
        let subtree = match setting("Destination.ShouldIncludeSubTree") {
            None => true,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                err(
                    "settings[Destination.ShouldIncludeSubTree]".into(),
                    format!("\"{v}\" is not True or False"),
                );
                true
            }),
        };
        // New objects must land where the next run looks, or every run creates them again.
        if let (ContainerRule::Fixed(container), Ok(base)) = (&container, Dn::parse(&scope_base))
            && container_known
            && let Ok(c) = Dn::parse(container)
            && !scope_base.is_empty()
        {
            let found = if subtree {
                c.is_within(&base)
            } else {
                c.normalized() == base.normalized()
            };
            if !found {
                err(
                    here("containerOptionValue"),
                    format!(
                        "{container} is outside the scope {scope_base} ({}): objects created there would not be found by the next run",
                        if subtree { "subtree" } else { "one level" }
                    ),
                );
            }
        }
        let deprovision_container = setting("Destination.DeprovisionContainer").map(String::from);
        if let Some(dn) = &deprovision_container
            && let Err(e) = valid_dn(dn)
        {
            err("settings[Destination.DeprovisionContainer]".into(), e);
        }
        let strategy = option.create_object_container_strategy.or(0);
        if !(0..=1).contains(&strategy) {
            err(
                here("createObjectContainerStrategy"),
                format!("{strategy} is not 0 (fail when missing) or 1 (create missing)"),
            );
        }

        objects.push(ObjectPlan {
            object_type,
            display_name: option.display_name.text().to_string(),
            create,
            delete: option.is_delete.or(false),
            deprovision: option.is_deprovisioning.or(false),
            container,
            create_containers: strategy == 1,
            scope_base,
            subtree,
            source_query,
            destination_query,
            destination_filter,
            fields,
            key_fields,
            rdn_field,
            naming: Naming::Cn,
            delete_threshold,
            deprovision_container,
            time_stamp_field,
            update_all,
        });
    }
    // One table holds one type's rows: two types would each delete the other's as out of
    // their source.
    if table.is_some() && objects.len() > 1 {
        err(
            "objectsOption".into(),
            format!(
                "a table destination takes one object type; this job has {}",
                objects.len()
            ),
        );
    }
    if table.is_some()
        && let Some(f) = objects
            .iter()
            .flat_map(|op| op.fields.iter())
            .find(|f| f.is_member_of())
    {
        err(
            format!("fieldsMap[{}]", f.map_index),
            "memberOf changes groups' members, which a table does not have".into(),
        );
    }
    // A group's `member` filled from its rows and users' `memberOf` from theirs would each
    // undo the other: a user row that does not name a group its row gave the user leaves it.
    let fills = |member_of: bool| {
        objects.iter().find_map(|op| {
            op.fields
                .iter()
                .find(|f| {
                    if member_of {
                        f.is_member_of()
                    } else {
                        f.is_dn_set() && f.attribute.eq_ignore_ascii_case("member")
                    }
                })
                .map(|f| (op.object_type.code(), f.map_index))
        })
    };
    if let (Some((user_type, user_field)), Some((group_type, group_field))) =
        (fills(true), fills(false))
    {
        err(
            format!("fieldsMap[{user_field}]"),
            format!(
                "object type {user_type} names its groups (memberOf) and object type {group_type} fills the groups' members (fieldsMap[{group_field}]): each would undo the other; keep one"
            ),
        );
    }
    // Mappings and queries for object types the job does not run are mistakes too: they
    // would be silently ignored otherwise.
    for (fi, f) in fields_map.iter().enumerate() {
        let code = f.object_type.get().copied().unwrap_or(1);
        if !objects_option
            .iter()
            .any(|o| o.object_type.get() == Some(&code))
        {
            err(
                format!("fieldsMap[{fi}].objectType"),
                format!("object type {code} has no objectsOption entry"),
            );
        }
    }
    if !errors.is_empty() {
        // A job-wide setting is checked once per object type: say each mistake once.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert((e.location.clone(), e.message.clone())));
        return Err(JobErrors(errors));
    }
    let job_settings = Settings(&settings_list);
    Ok(Plan {
        name: job_name(job),
        objects,
        table,
        source_file: job_settings.get("Source.File", None).map(String::from),
        destination_provider: job_settings
            .get("Destination.ProviderName", None)
            .map(String::from),
    })
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
